"""Races of "the last value wins", each forced deterministically with real processes.

A peer frozen in a plain (non-gevent) BLPOP stands for a process stopped by the OS or a
long computation; Redis's CLIENT KILL for a dropped connection; a peer whose clock runs
ahead for another machine. Each test failed before the fix it pins (docs/channels.md,
"Last value wins, whatever the load").
"""

from __future__ import annotations

import os
import time

import gevent
import pytest
from chanload_helpers import (  # noqa: F401  (fixtures)
    CONVERGE_TIMEOUT,
    cpu_load_fixture,
    name_fixture,
    newest,
    open_everywhere,
    peers_fixture,
    wait_converged,
)
from peer import cmd

from beacon_ipy.connection import get_redis

pytestmark = pytest.mark.timeout(300)


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
