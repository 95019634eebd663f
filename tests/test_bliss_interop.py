"""Interoperability with real BLISS 2.4 processes on the same Redis (separate virtualenv)."""

from __future__ import annotations

import gc
import logging
import os
import pickle
import time
import uuid

import numpy
import pytest
from bliss_env import bliss_python_fixture  # noqa: F401  (provides the bliss_python fixture)
from peer import Peer, cmd
from peers import jsoncodec
from waiting import wait_for

from beacon_ipy.channels import Channel, EventChannel, wire
from beacon_ipy.connection import get_redis

pytestmark = pytest.mark.bliss

NESTED = {"motor": {"position": 1.25, "limits": [-10.0, 10.0], "state": "READY"},
          "counts": numpy.arange(12, dtype=numpy.int32).reshape(3, 4),
          "label": "ascan", "flags": (True, None)}


@pytest.fixture
def bliss(bliss_python):
    with Peer("bliss_peer.py", python=bliss_python) as p:
        p.expect("ready", timeout=60)
        yield p


@pytest.fixture
def name():
    return f"interop-{uuid.uuid4().hex[:10]}"



def assert_nested_equal(a, b):
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], numpy.ndarray):
            numpy.testing.assert_array_equal(a[key], b[key])
            assert a[key].dtype == b[key].dtype
        else:
            assert a[key] == b[key], key


def test_bliss_holds_beacon_reads(bliss, name):
    cmd(bliss, cmd="channel", name=name, value=NESTED)
    assert_nested_equal(Channel(name, default_value="unused").value, NESTED)
    arr = numpy.linspace(0, 1, 2048, dtype=numpy.float32)
    cmd(bliss, cmd="channel", name=f"{name}-arr", value=arr)
    got = Channel(f"{name}-arr").value
    assert got.dtype == numpy.float32
    numpy.testing.assert_array_equal(got, arr)


def test_beacon_holds_bliss_reads(bliss, name):
    Channel(name, value=NESTED)
    cmd(bliss, cmd="channel", name=name)
    reply = cmd(bliss, cmd="get", name=name, timeout=5)
    assert_nested_equal(jsoncodec.decode(reply["value"]), NESTED)
    assert reply["elapsed"] < 2.0


def test_beacon_default_is_held_and_answered_to_bliss(bliss, name):
    """beacon-ipy A falls back to its default; BLISS B's ``Channel(name)`` reads it."""
    ours = Channel(name, default_value=42)
    assert ours.value == 42
    cmd(bliss, cmd="channel", name=name)
    reply = cmd(bliss, cmd="get", name=name, timeout=5)
    assert reply["value"] == 42
    assert reply["elapsed"] < 1.0, "BLISS waited for an answer that never came"
    # Even a BLISS default of its own gives way to the held one (as between two BLISS).
    cmd(bliss, cmd="channel", name=f"{name}-2", default_value="bliss default")
    assert cmd(bliss, cmd="get", name=f"{name}-2")["value"] == "bliss default"
    Channel(f"{name}-3", default_value="ours").value  # noqa: B018
    cmd(bliss, cmd="channel", name=f"{name}-3", default_value="bliss default")
    assert cmd(bliss, cmd="get", name=f"{name}-3")["value"] == "ours"


def test_bliss_default_is_held_and_answered_to_beacon(bliss, name):
    """BLISS A falls back to its default; beacon-ipy B's ``Channel(name)`` reads it."""
    cmd(bliss, cmd="channel", name=name, default_value=42)
    assert cmd(bliss, cmd="get", name=name)["value"] == 42
    assert Channel(name, timeout=5).value == 42
    assert Channel(f"{name}-x", default_value="ours").value == "ours"  # nobody holds it


def test_callbacks_both_ways(bliss, name):
    ch = Channel(name, value=0)
    seen = []
    ch.register_callback(seen.append)
    cmd(bliss, cmd="channel", name=name)
    assert cmd(bliss, cmd="get", name=name)["value"] == 0
    cmd(bliss, cmd="callback", name=name)
    ch.value = {"from": "beacon", "data": numpy.ones(3)}
    got = jsoncodec.decode(bliss.expect("callback")["value"])
    numpy.testing.assert_array_equal(got["data"], numpy.ones(3))
    cmd(bliss, cmd="set", name=name, value="from bliss")
    wait_for(lambda: any(isinstance(v, str) and v == "from bliss" for v in seen),
             what="BLISS's set to reach our callback")
    assert ch.value == "from bliss"


def test_event_channel_both_ways(bliss, name):
    ev = EventChannel(name)
    got = []
    ev.register_callback(got.extend)
    cmd(bliss, cmd="event_channel", name=name)
    cmd(bliss, cmd="event_callback", name=name)
    posted = [f"bliss event {i}" for i in range(1000)] + [numpy.arange(3), {"k": [1, 2]}]
    cmd(bliss, cmd="post", name=name, values=posted)
    wait_for(lambda: len(got) >= len(posted), what="BLISS events")
    assert got[:1000] == posted[:1000]
    numpy.testing.assert_array_equal(got[1000], posted[1000])
    assert got[1001] == {"k": [1, 2]}

    ours = [f"beacon event {i}" for i in range(500)] + [NESTED]
    for e in ours:
        ev.post(e)
    received = []
    while len(received) < len(ours):
        batch = jsoncodec.decode(bliss.expect("events")["values"])
        received += [e for e in batch if not (isinstance(e, str) and e.startswith("bliss"))
                     and not (isinstance(e, numpy.ndarray) or e == {"k": [1, 2]})]
    assert received[:500] == ours[:500]
    assert_nested_equal(received[500], NESTED)


# -- better than BLISS: each difference shown next to BLISS's own behaviour -----------------
def read_until(peer, event: str, timeout: float = 10.0) -> list[dict]:
    """Every line ``peer`` says up to and including the first ``event``."""
    lines = []
    while not lines or lines[-1].get("event") != event:
        lines.append(peer.read(timeout))
    return lines


def test_lambdas_fire_here_while_bliss_drops_them(bliss, name):
    ch = Channel(name, value=0)
    seen = []
    ch.register_callback(lambda value: seen.append(value))  # no other reference kept
    gc.collect()
    cmd(bliss, cmd="channel", name=name)
    assert cmd(bliss, cmd="get", name=name)["value"] == 0  # its query is over
    cmd(bliss, cmd="lambda_callback", name=name)  # BLISS holds it weakly: gone at once
    cmd(bliss, cmd="callback", name=name)
    ch.value = 1
    said = read_until(bliss, "callback")
    bliss.send(cmd="ping")
    said += read_until(bliss, "reply")  # BLISS's firing of value 1 is over by then
    assert [m["value"] for m in said if m.get("event") == "callback"] == [1]
    assert not [m for m in said if m.get("event") == "lambda_callback"], said
    cmd(bliss, cmd="set", name=name, value=2)
    wait_for(lambda: seen == [1, 2], what="our lambda to fire for BLISS's set")


def test_a_raising_callback_is_isolated_here_while_it_stops_bliss_listening(bliss, name,
                                                                             caplog):
    # Here: one raising callback; the other callbacks and channels go on.
    a, b = Channel(name, value=0), Channel(f"{name}-b", value=0)
    got_a, got_b = [], []

    def bad(value):
        raise ValueError("boom")

    a.register_callback(bad)
    a.register_callback(got_a.append)
    b.register_callback(got_b.append)
    for n in (name, f"{name}-b"):
        cmd(bliss, cmd="channel", name=n)
    with caplog.at_level(logging.ERROR, logger="beacon_ipy.channels"):
        cmd(bliss, cmd="set", name=name, value=1)
        cmd(bliss, cmd="set", name=f"{name}-b", value=1)
        wait_for(lambda: got_a == [1] and got_b == [1], what="the good callbacks")
    assert any("boom" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)
    # In BLISS: its raising callback ends its listener, so it stops answering queries
    # for every channel; a reader of a value only BLISS holds gets no answer.
    cmd(bliss, cmd="channel", name=f"{name}-alive", value="answered")
    cmd(bliss, cmd="channel", name=f"{name}-only-bliss", value="held by BLISS")
    assert Channel(f"{name}-alive", timeout=5).value == "answered"
    cmd(bliss, cmd="raise_callback", name=name)
    a.value = 2  # BLISS's listener runs the raising callback and dies
    assert a.bus.flush()  # Redis has delivered it to BLISS before our query below
    with pytest.raises(TimeoutError, match="did not answer"):
        Channel(f"{name}-only-bliss", timeout=1).value  # noqa: B018


def test_a_callback_fired_by_bliss_can_read_a_channel_bliss_holds(bliss, name):
    """Waiting inside a callback works (the listener hands off; BLISS would deadlock)."""
    trigger = Channel(name, value=0)
    cmd(bliss, cmd="channel", name=f"{name}-other", value="held by BLISS")
    results = []
    trigger.register_callback(
        lambda value: results.append(Channel(f"{name}-other", timeout=5).value))
    cmd(bliss, cmd="channel", name=name)
    cmd(bliss, cmd="set", name=name, value=1)
    wait_for(lambda: results, what="the callback's read of BLISS's channel")
    assert results == ["held by BLISS"]


def test_hostile_messages_run_in_bliss_but_never_here(bliss, name, tmp_path):
    marker = tmp_path / "ran-in"
    ch = Channel(name, value="safe")
    seen = []
    ch.register_callback(seen.append)
    cmd(bliss, cmd="channel", name=name)
    hostile = _bliss_value_pickle(("666", time.time(), _RunShell(f"echo $PPID >> {marker}")))
    get_redis().publish(name, hostile)
    wait_for(lambda: marker.exists() and marker.read_text().strip(),
             what="BLISS to run the message's code")
    assert marker.read_text().split() == [str(bliss.proc.pid)], "it ran here too"
    # and our listener goes on: BLISS's next value arrives
    cmd(bliss, cmd="set", name=name, value="after")
    wait_for(lambda: seen and seen[-1] == "after", what="BLISS's value after the hostile one")


def test_reconnects_after_a_redis_restart_and_serves_bliss_again(bliss_python, own_redis):
    name = f"interop-restart-{uuid.uuid4().hex[:8]}"
    url = own_redis.url
    ch = Channel(name, value="held here", redis=url)
    assert ch.bus.wait_subscribed(name, 5)
    before = ch.bus.reconnections
    own_redis.restart()  # every connection drops; the new server knows nothing
    wait_for(lambda: ch.bus.reconnections > before, timeout=20, what="our reconnection")
    with Peer("bliss_peer.py", python=bliss_python, env={"BEACON_REDIS_URL": url}) as fresh:
        fresh.expect("ready", timeout=60)
        cmd(fresh, cmd="channel", name=name)
        assert cmd(fresh, cmd="get", name=name, timeout=5)["value"] == "held here"
        cmd(fresh, cmd="callback", name=name)
        ch.value = "after restart"
        assert fresh.expect("callback")["value"] == "after restart"
    ch.bus.close()


class _RunShell:
    """Unpickles as ``os.system(command)``: what a hostile publisher would send."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _bliss_value_pickle(fields) -> bytes:
    """``bliss.config.channels._Value(*fields)`` pickled, with any payload inside."""
    def short_str(text):  # SHORT_BINUNICODE
        return b"\x8c" + bytes((len(text),)) + text.encode()

    value_class = short_str(wire.BLISS_MODULE) + short_str("_Value") + b"\x93"  # STACK_GLOBAL
    return b"\x80\x04" + value_class + pickle.dumps(fields, 4)[2:-1] + b"\x81."  # NEWOBJ STOP
