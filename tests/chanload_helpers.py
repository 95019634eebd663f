"""Shared by the channel load tests (test_channels_load.py, test_channels_races.py).

Fixtures ``cpu_load`` (busy loops on every core), ``name`` and ``peers`` (ready
``peers/chanload_peer.py`` processes), and helpers reading the monitor's record of the
wire and polling peers until they converge. Import the fixtures into a test module with
``from chanload_helpers import cpu_load_fixture, name_fixture, peers_fixture``
(``# noqa: F401``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

import gevent
import pytest
from peer import Peer, cmd

CONVERGE_TIMEOUT = 60.0


@pytest.fixture(name="cpu_load")
def cpu_load_fixture():
    """Busy loops on every core for the test's duration (killed by pid afterwards)."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
             for _ in range(os.cpu_count() or 2)]
    yield procs
    for proc in procs:
        proc.kill()
        proc.wait()


@pytest.fixture(name="name")
def name_fixture():
    return f"load-{uuid.uuid4().hex[:10]}"


@pytest.fixture(name="peers")
def peers_fixture():
    """``start(patched=False, env=None)`` -> a ready chanload peer, closed afterwards."""
    started: list[Peer] = []

    def start(patched: bool = False, env: dict | None = None) -> Peer:
        peer = Peer("chanload_peer.py", patch=patched, env=env)
        started.append(peer)
        peer.expect("ready", timeout=60)
        return peer

    yield start
    for peer in started:
        peer.close()


def newest(entries: list) -> list:
    """The value entry with the greatest timestamp (the one every process keeps)."""
    values = [e for e in entries if e[0] == "value"]
    assert values, "no value on the wire"
    return max(values, key=lambda e: e[2])


def last_value(entries: list) -> list:
    return [e for e in entries if e[0] == "value"][-1]


def wait_converged(name: str, expected, peers: list[Peer], timeout: float = CONVERGE_TIMEOUT,
                   callbacks: bool = True) -> None:
    """Poll every peer's state (value, last callback) until it equals ``expected``."""
    deadline = time.monotonic() + timeout
    for peer in peers:
        while True:
            state = cmd(peer, cmd="state", name=name)
            got = (state["value"], state["last_callback"] if callbacks else expected)
            if got == (expected, expected):
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"{peer.args} did not converge on {expected!r} within "
                                     f"{timeout} s: {state}")
            gevent.sleep(0.01)  # spacing the polls of another process


def open_everywhere(name: str, peers: list[Peer]) -> None:
    for peer in peers:
        cmd(peer, cmd="open", name=name, default="unset")


KERNEL_RECORDER = """
from beacon_ipy.channels import Channel

class Recorder:
    def __init__(self, name, default):
        self.last = "<no callback yet>"
        self.count = 0
        self.channel = Channel(name, default_value=default, callback=self.seen)

    def seen(self, value):
        self.last = value
        self.count += 1

recorders = {}

def reopen(name, default="unset"):
    old = recorders.pop(name, None)
    if old is not None:
        old.channel.close()
    recorders[name] = Recorder(name, default)

def state(name):
    rec = recorders[name]
    return (rec.channel.value, rec.last)
"""
