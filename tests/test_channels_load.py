"""The last value wins, whatever the load: real processes hammering one channel.

Every test runs with both cores kept busy by plain busy-loop processes. Writers are real
peer processes (``peers/chanload_peer.py``, unpatched and gevent-patched, and a real
BLISS 2.4 process), consumers are peer processes and a real beacon kernel. A monitor
process records the wire in Redis's order (a raw subscriber answering queries "no
value"), which is the ground truth: after every writer flushed, every process's
``Channel.value`` and its callbacks' last value must equal the newest value on the wire
(the greatest timestamp: BLISS's rule, which every process applies); a set made after
all others (a peer's last set) is both the newest and the last published.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

import gevent
import pytest
from bliss_env import bliss_python_fixture  # noqa: F401  (the bliss_python fixture)
from peer import Peer, cmd

from beacon_ipy.connection import get_redis

pytestmark = pytest.mark.timeout(600)

CONVERGE_TIMEOUT = 60.0


@pytest.fixture
def cpu_load():
    """Busy loops on every core for the test's duration (killed by pid afterwards)."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
             for _ in range(os.cpu_count() or 2)]
    yield procs
    for proc in procs:
        proc.kill()
        proc.wait()


@pytest.fixture
def name():
    return f"load-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def peers():
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


def open_everywhere(name: str, peers: list[Peer]) -> None:
    for peer in peers:
        cmd(peer, cmd="open", name=name, default="unset")


# -- the tests --------------------------------------------------------------------------
def test_last_value_wins_between_plain_processes_under_load(cpu_load, peers, name):
    monitor = peers()
    cmd(monitor, cmd="monitor", name=name)
    writers = [peers(), peers(), peers(patched=True)]
    consumers = [peers(), peers(patched=True)]
    open_everywhere(name, [*writers, *consumers])
    stats = hammer_rounds(name, writers, consumers, monitor, rounds=6, count=300,
                          reopen=consumers[:1])
    print("plain processes under load:", stats)


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


def test_a_peers_set_wins_over_an_older_local_set_published_after_it(cpu_load, peers, name):
    """Coalescing sender and own echo: X sets twice (the second waits in its queue) and
    freezes; Y then sets; X's queued, older value reaches Redis after Y's, and its echo
    comes back to X after Y's value. Everyone, X included, must end with Y's value, and
    X's callbacks fire once per change (never for its own echo)."""
    monitor = peers()
    cmd(monitor, cmd="monitor", name=name)
    x, y, c = peers(), peers(patched=True), peers()
    open_everywhere(name, [x, y, c])
    before = cmd(x, cmd="state", name=name)["callbacks"]
    key = f"chanload:go:{name}"
    cmd(x, cmd="set_then_block", name=name, values=["local-0", "local-1"], key=key)
    cmd(y, cmd="set", name=name, value="peer")
    values = [e[3] for e in cmd(monitor, cmd="log", name=name)["entries"] if e[0] == "value"]
    assert "peer" in values and "local-1" not in values, values
    get_redis().rpush(key, "go")
    deadline = time.monotonic() + CONVERGE_TIMEOUT
    while "local-1" not in values:
        assert time.monotonic() < deadline, "X's queued set never reached Redis"
        gevent.sleep(0.01)
        values = [e[3] for e in cmd(monitor, cmd="log", name=name)["entries"]
                  if e[0] == "value"]
    assert values.index("peer") < values.index("local-1")  # published last, yet older
    wait_converged(name, "peer", [x, y, c])
    # local-0, local-1 (own sets, fired in the setter), peer: the echoes fired nothing.
    assert cmd(x, cmd="state", name=name)["callbacks"] - before == 3


def test_a_value_arriving_while_a_query_is_in_flight_beats_the_default(cpu_load, peers,
                                                                         name):
    """NOTES §1's default rule: C asks who holds a value; B, counted, answers late; W
    sets meanwhile. When every answer turns out to be "no value", C must keep W's value,
    not fall back to its default."""
    monitor = peers()
    cmd(monitor, cmd="monitor", name=name)
    b, c, w = peers(), peers(patched=True), peers()
    key = f"chanload:go:{name}"
    cmd(b, cmd="open_then_block", name=name, default="dflt-B", key=key)
    deadline = time.monotonic() + CONVERGE_TIMEOUT
    while get_redis().pubsub_numsub(name)[0][1] < 2:  # the monitor and B
        assert time.monotonic() < deadline, "B never subscribed"
        gevent.sleep(0.01)
    cmd(c, cmd="open", name=name, default="dflt-C")
    cmd(w, cmd="open", name=name, default="dflt-W")
    cmd(w, cmd="set", name=name, value="from W")
    state = cmd(c, cmd="state", name=name)
    assert state["value"] == "from W" and state["querying"], state
    get_redis().rpush(key, "go")
    deadline = time.monotonic() + CONVERGE_TIMEOUT
    while state["querying"]:
        assert time.monotonic() < deadline, f"C's query never ended: {state}"
        gevent.sleep(0.01)
        state = cmd(c, cmd="state", name=name)
    assert (state["value"], state["last_callback"]) == ("from W", "from W"), state
    wait_converged(name, "from W", [b, c, w])


def test_a_set_supersedes_a_value_from_a_clock_ahead(peers, name):
    """A peer whose clock runs 5 s ahead (another machine) sets; then a peer that has
    seen that value sets a new one: the later set must win everywhere, as it does when
    clocks agree (BLISS would keep the earlier value in every other process)."""
    fast = peers(env={"CHANLOAD_CLOCK_OFFSET": "5"})
    n, c = peers(), peers(patched=True)
    open_everywhere(name, [fast, n, c])
    cmd(fast, cmd="set", name=name, value="from the fast clock")
    wait_converged(name, "from the fast clock", [fast, n, c])
    cmd(n, cmd="set", name=name, value="later")
    wait_converged(name, "later", [fast, n, c])
    cmd(fast, cmd="set", name=name, value="later still")
    wait_converged(name, "later still", [fast, n, c])


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


def test_processes_that_missed_a_value_while_disconnected_catch_up_with_the_newest(peers,
                                                                                    name):
    """C and S hold an old value and are frozen; Redis drops their connections; W sets a
    new value, which neither receives. Both reconnect and ask: S's stale answer may reach
    C before W's (and the reverse): both must still end with W's value."""
    from beacon_ipy.connection import new_client

    admin = new_client(os.environ["BEACON_REDIS_URL"])
    monitor = peers()
    cmd(monitor, cmd="monitor", name=name)
    c, s = peers(), peers()
    open_everywhere(name, [c, s])
    before = {client["id"] for client in admin.client_list()}
    w = peers(patched=True)
    open_everywhere(name, [w])
    spared = {client["id"] for client in admin.client_list()} - before
    spared.add(str(admin.client_id()))
    cmd(w, cmd="set", name=name, value="old")
    wait_converged(name, "old", [c, s, w])
    key = f"chanload:go:{name}"
    for trial in range(4):
        cmd(c, cmd="block", key=key)
        cmd(s, cmd="block", key=key)
        deadline = time.monotonic() + CONVERGE_TIMEOUT
        while sum("b" in cl["flags"] for cl in admin.client_list()) < 2:
            assert time.monotonic() < deadline, "C and S never blocked"
            gevent.sleep(0.01)
        for client in admin.client_list():
            if (client["id"] not in spared and client["name"] != "chanload-monitor"
                    and "b" not in client["flags"]):
                admin.client_kill_filter(_id=client["id"])
        cmd(w, cmd="set", name=name, value=f"new-{trial}")
        admin.rpush(key, "go", "go")
        wait_converged(name, f"new-{trial}", [c, s, w])


def test_the_latest_value_is_resent_when_only_the_publisher_connection_breaks(peers, name):
    """X writes v1 directly, queues v2, freezes; Redis drops X's publisher connection
    (its subscriber stays up, so nothing is re-announced). The resend after the break
    must carry v2, the value X holds, not v1."""
    from beacon_ipy.connection import new_client

    admin = new_client(os.environ["BEACON_REDIS_URL"])
    monitor = peers()
    cmd(monitor, cmd="monitor", name=name)
    c = peers(patched=True)
    open_everywhere(name, [c])
    before = {client["id"] for client in admin.client_list()}
    x = peers()
    open_everywhere(name, [x])
    cmd(x, cmd="set", name=name, value="warm")  # X's publisher is connected
    wait_converged(name, "warm", [x, c])
    x_ids = {client["id"] for client in admin.client_list()} - before
    key = f"chanload:go:{name}"
    cmd(x, cmd="set_then_block", name=name, values=["v1", "v2"], key=key)
    deadline = time.monotonic() + CONVERGE_TIMEOUT
    while not any("b" in cl["flags"] for cl in admin.client_list()):
        assert time.monotonic() < deadline, "X never blocked"
        gevent.sleep(0.01)
    killed = 0
    for client in admin.client_list():
        if client["id"] in x_ids and client["sub"] == "0":
            killed += admin.client_kill_filter(_id=client["id"])
    assert killed >= 1
    admin.rpush(key, "go")
    wait_converged(name, "v2", [x, c])
    assert newest(cmd(monitor, cmd="log", name=name)["entries"])[3] == "v2"


def test_callbacks_never_end_on_an_older_value_after_a_waiting_callback(peers, name):
    """C's first callback waits (reads a channel whose query a frozen peer B answers
    late): the listener hands off and a newer value is fired to every callback. When the
    waiting callback returns, the older value must not go on to the callbacks after it:
    their last call would show a value the channel no longer holds."""
    other = f"{name}-other"
    key = f"chanload:go:{name}"
    b, c, w = peers(), peers(), peers(patched=True)
    cmd(b, cmd="open_then_block", name=other, default="dflt-B", key=key)
    deadline = time.monotonic() + CONVERGE_TIMEOUT
    while get_redis().pubsub_numsub(other)[0][1] < 1:
        assert time.monotonic() < deadline, "B never subscribed"
        gevent.sleep(0.01)
    cmd(c, cmd="open", name=name, default="unset", slow_on="slow", other=other)
    open_everywhere(name, [w])
    cmd(w, cmd="set", name=name, value="slow")
    wait_converged(name, "slow", [c], callbacks=False)  # C holds it: its callbacks run
    cmd(w, cmd="set", name=name, value="fast")
    wait_converged(name, "fast", [c, w])  # fired to every callback by the new listener
    get_redis().rpush(key, "go")
    deadline = time.monotonic() + CONVERGE_TIMEOUT
    while (state := cmd(c, cmd="state", name=name))["slow_done"] < 1:
        assert time.monotonic() < deadline, f"the waiting callback never returned: {state}"
        gevent.sleep(0.01)
    assert (state["value"], state["last_callback"]) == ("fast", "fast"), state
