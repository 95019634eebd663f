"""The last value wins, whatever the load: real processes hammering one channel.

Every test runs with both cores kept busy by plain busy-loop processes. Writers are real
peer processes (``peers/chanload_peer.py``, unpatched and gevent-patched, and a real
BLISS 2.4 process), consumers are peer processes and a real beacon kernel. A monitor
process records the wire in Redis's order (a raw subscriber answering queries "no
value"), which is the ground truth: after every writer flushed, every process's
``Channel.value`` and its callbacks' last value must equal the newest value on the wire
(the greatest timestamp: BLISS's rule, which every process applies); a set made after
all others (a peer's last set) is both the newest and the last published.
The races those rounds may or may not hit are pinned one by one in
``test_channels_races.py``.
"""

from __future__ import annotations

import os
import time

import gevent
import pytest
from bliss_env import bliss_python_fixture  # noqa: F401  (the bliss_python fixture)
from chanload_helpers import (  # noqa: F401  (fixtures)
    CONVERGE_TIMEOUT,
    KERNEL_RECORDER,
    cpu_load_fixture,
    last_value,
    name_fixture,
    newest,
    open_everywhere,
    peers_fixture,
    wait_converged,
)
from peer import Peer, cmd

pytestmark = pytest.mark.timeout(600)


def hammer_rounds(name: str, writers: list[Peer], consumers: list[Peer], monitor: Peer,
                  rounds: int, count: int, reopen: list[Peer] = (), extra_writes=None,
                  extra_check=None, reconnecting: bool = False) -> dict:
    """``rounds`` rounds of concurrent hammering, each checked twice (see module doc)."""
    stats = {"rounds": rounds, "sets": 0, "newest_not_last": 0}
    everyone = [*writers, *consumers]
    for r in range(rounds):
        commands = [{"cmd": "hammer", "name": name, "tag": f"r{r}w{i}", "count": count,
                     "burst": 16, "seed": r * 100 + i} for i in range(len(writers))]
        # Consumers to reopen (a fresh query) go at the same time as the writers.
        commands += [{"cmd": "open", "name": name, "default": "unset"} for _ in reopen]
        for peer, command in zip([*writers, *reopen], commands, strict=True):
            peer.send(**command)
        if extra_writes is not None:
            extra_writes(r)
        for peer in [*writers, *reopen]:
            peer.expect("reply", timeout=120)
        stats["sets"] += count * len(writers)
        entries = cmd(monitor, cmd="log", name=name)["entries"]
        top = newest(entries)
        stats["newest_not_last"] += top != last_value(entries)
        wait_converged(name, top[3], everyone)
        if extra_check is not None:
            extra_check(top[3])
        # A peer's last set, after every other: the newest and the last published.
        closer = writers[r % len(writers)]
        final = f"final-{r}"
        cmd(closer, cmd="set", name=name, value=final)
        entries = cmd(monitor, cmd="log", name=name)["entries"]
        assert newest(entries)[3] == final
        if not reconnecting:  # else a late re-announce of an older value may follow
            assert last_value(entries)[3] == final
        wait_converged(name, final, everyone)
        if extra_check is not None:
            extra_check(final)
    return stats


# -- the tests ------------------------------------------------------------------
def test_last_value_wins_between_plain_processes_under_load(cpu_load, peers, name):
    monitor = peers()
    cmd(monitor, cmd="monitor", name=name)
    writers = [peers(), peers(), peers(patched=True)]
    consumers = [peers(), peers(patched=True)]
    open_everywhere(name, [*writers, *consumers])
    stats = hammer_rounds(name, writers, consumers, monitor, rounds=6, count=300,
                          reopen=consumers[:1])
    print("plain processes under load:", stats)


@pytest.mark.bliss
def test_last_value_wins_in_a_beacon_kernel_and_with_bliss_under_load(
        cpu_load, peers, name, kernels_dir, bliss_python):
    """Writers: two beacon_ipy peers (one patched) and a real BLISS process, interleaved;
    consumers: a real beacon kernel (reopening its channel, i.e. querying, mid-hammer
    every round), a plain peer and the BLISS process itself."""
    from jupyter_helpers import started_kernel

    monitor = peers()
    cmd(monitor, cmd="monitor", name=name)
    writers = [peers(), peers(patched=True)]
    consumers = [peers()]
    open_everywhere(name, [*writers, *consumers])
    with Peer("bliss_peer.py", python=bliss_python) as bliss, \
            started_kernel(kernels_dir) as kernel:
        bliss.expect("ready", timeout=60)
        cmd(bliss, cmd="channel", name=name)
        kernel.run(KERNEL_RECORDER)
        kernel.run(f"reopen({name!r})")
        kernel.wait_until(f"recorders[{name!r}].channel.has_value")

        def extra_writes(r: int) -> None:
            kernel.run(f"reopen({name!r})")  # a query in flight while values arrive
            last = f"r{r}bliss-{49}"
            for i in range(50):
                bliss.send(cmd="set", name=name, value=f"r{r}bliss-{i}")
            for _ in range(50):
                bliss.expect("reply")
            # BLISS publishes what it holds when its sender gets there: its last set,
            # unless a newer value from a writer replaced it first (then never sent).
            deadline = time.monotonic() + CONVERGE_TIMEOUT
            while True:
                held = cmd(bliss, cmd="get", name=name)["value"]
                entries = cmd(monitor, cmd="log", name=name)["entries"]
                if held != last or any(e[0] == "value" and e[3] == last for e in entries):
                    break
                if time.monotonic() > deadline:
                    raise AssertionError(f"BLISS's last set {last!r} never reached Redis; "
                                         f"wire: {entries[-6:]}")
                gevent.sleep(0.01)

        def extra_check(expected) -> None:
            kernel.wait_until(f"state({name!r}) == ({expected!r}, {expected!r})",
                              timeout=CONVERGE_TIMEOUT)
            deadline = time.monotonic() + CONVERGE_TIMEOUT
            while cmd(bliss, cmd="get", name=name)["value"] != expected:
                assert time.monotonic() < deadline, f"BLISS never held {expected!r}"
                gevent.sleep(0.01)

        stats = hammer_rounds(name, writers, consumers, monitor, rounds=5, count=300,
                              reopen=consumers, extra_writes=extra_writes,
                              extra_check=extra_check)
    print("kernel + BLISS under load:", stats)


def test_last_value_wins_across_dropped_connections_under_load(cpu_load, peers, name,
                                                                 kernels_dir):
    """Every connection but the monitor's (a beacon kernel's included) is killed by Redis
    twice during each round: each process reconnects, re-announces, catches up; all end
    with the newest value."""
    from jupyter_helpers import started_kernel

    from beacon_ipy.connection import new_client

    monitor = peers()
    cmd(monitor, cmd="monitor", name=name)
    writers = [peers(), peers(patched=True)]
    consumers = [peers(), peers(patched=True)]
    open_everywhere(name, [*writers, *consumers])
    admin = new_client(os.environ["BEACON_REDIS_URL"])
    me = admin.client_id()

    def kill_clients(r: int) -> None:
        for _ in range(2):
            for client in admin.client_list():
                if client["name"] != "chanload-monitor" and int(client["id"]) != me:
                    admin.client_kill_filter(_id=client["id"])

    with started_kernel(kernels_dir) as kernel:
        kernel.run(KERNEL_RECORDER)
        kernel.run(f"reopen({name!r})")
        kernel.wait_until(f"recorders[{name!r}].channel.has_value")

        def in_kernel(expected) -> None:
            kernel.wait_until(f"state({name!r}) == ({expected!r}, {expected!r})",
                              timeout=CONVERGE_TIMEOUT)

        stats = hammer_rounds(name, writers, consumers, monitor, rounds=5, count=300,
                              extra_writes=kill_clients, extra_check=in_kernel,
                              reconnecting=True)
        reconnections = [cmd(p, cmd="state", name=name)["reconnections"]
                         for p in [*writers, *consumers]]
        reconnections.append(kernel.eval(f"recorders[{name!r}].channel.bus.reconnections"))
    assert min(reconnections) >= 1, reconnections
    print("dropped connections under load:", stats, "reconnections:", reconnections)
