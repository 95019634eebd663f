"""Channel / EventChannel / Cache semantics against a real Redis and real peer processes."""

from __future__ import annotations

import gc
import logging
import os
import pickle
import uuid
import weakref

import numpy
import pytest
from peer import Peer, cmd
from peers import jsoncodec
from waiting import wait_for

from beacon_ipy.channels import (
    Cache,
    Channel,
    EventChannel,
    UnsafeValueError,
    cached_channels,
    clear_cache,
    wire,
)
from beacon_ipy.connection import get_redis


@pytest.fixture
def name():
    return f"test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def peer():
    with Peer("channel_peer.py") as p:
        p.expect("ready")
        yield p



# -- sharing values ---------------------------------------------------------------------
def test_peer_value_is_read_by_a_new_channel(peer, name):
    cmd(peer, cmd="channel", name=name, value={"a": [1, 2.5, "x"]})
    assert Channel(name, default_value="dflt").value == {"a": [1, 2.5, "x"]}


def test_own_value_is_read_by_peer_and_callbacks_cross_processes(peer, name):
    ch = Channel(name, value=7)
    reply = cmd(peer, cmd="get", name=name)
    assert reply["value"] == 7
    cmd(peer, cmd="callback", name=name)
    seen = []
    ch.register_callback(seen.append)
    ch.value = numpy.arange(4.0)
    msg = peer.expect("callback")
    numpy.testing.assert_array_equal(jsoncodec.decode(msg["value"]), numpy.arange(4.0))
    cmd(peer, cmd="set", name=name, value="from peer")
    wait_for(lambda: any(isinstance(v, str) and v == "from peer" for v in seen),
             what="callback for the peer's set")
    assert ch.value == "from peer"


def test_default_when_nobody_holds_and_value_disappears_with_last_holder(name):
    assert Channel(name, default_value=42).value == 42
    other = f"{name}-gone"
    with Peer("channel_peer.py") as p:
        p.expect("ready")
        cmd(p, cmd="channel", name=other, value="held by peer")
        assert cmd(p, cmd="get", name=other)["value"] == "held by peer"
    # The only holder has exited: nothing is stored in Redis keys.
    assert get_redis().keys(f"*{other}*") == []
    assert Channel(other, default_value="default").value == "default"


def test_seed_example_a_default_is_held_and_answered_across_processes(own_redis):
    """The seed, word for word: A's ``Channel("test", default_value=42)`` reads 42 and
    B's ``Channel("test")`` reads 42 too (A holds its default and answers, as BLISS 2.4)."""
    env = {"BEACON_REDIS_URL": own_redis.url}
    with Peer("channel_peer.py", env=env) as a, Peer("channel_peer.py", env=env) as b:
        a.expect("ready")
        b.expect("ready")
        cmd(a, cmd="channel", name="test", default_value=42)
        assert cmd(a, cmd="get", name="test")["value"] == 42
        assert cmd(b, cmd="get", name="test")["value"] == 42  # Channel("test").value
        # Whoever obtained it holds it: with A gone, a newcomer still gets 42 from B,
        # even when it brings another default of its own.
    assert Channel("test", default_value="mine", redis=own_redis.url).value == "mine"
    with Peer("channel_peer.py", env=env) as a, Peer("channel_peer.py", env=env) as b:
        a.expect("ready")
        b.expect("ready")
        cmd(a, cmd="channel", name="held", default_value=42)
        assert cmd(a, cmd="get", name="held")["value"] == 42
        assert cmd(b, cmd="get", name="held")["value"] == 42
        a.close()
        late = Channel("held", default_value=-1, redis=own_redis.url)
        assert late.value == 42
        # A real value supersedes a held default everywhere.
        late.value = 43
        wait_for(lambda: cmd(b, cmd="get", name="held")["value"] == 43,
                 what="the set to replace B's held default")


def test_one_object_per_name_and_kind_conflict(name):
    assert Channel(name, default_value=1) is Channel(name)
    with pytest.raises(TypeError, match="already a Channel"):
        EventChannel(name)
    with pytest.raises(TypeError):
        Channel(3)


def test_value_times_out_naming_the_channel_when_a_subscriber_never_answers(name):
    silent = get_redis().pubsub()
    silent.subscribe(name)  # a subscriber that never answers queries
    silent.get_message(timeout=1)
    try:
        ch = Channel(name, timeout=0.3)
        with pytest.raises(TimeoutError, match=name):
            _ = ch.value
        ch.timeout = 30  # a per-call limit wins over the channel's own, which stays
        with pytest.raises(TimeoutError, match="within 0.2 s"):
            ch.get(timeout=0.2)
        assert ch.timeout == 30
    finally:
        silent.close()


def test_older_values_are_ignored(name):
    ch = Channel(name, value="current")
    r = get_redis()
    stale = wire.WireValue("999", ch.timestamp - 10, "stale")
    newer = wire.WireValue("999", ch.timestamp + 10, "newer")
    seen = []
    ch.register_callback(seen.append)
    r.publish(name, wire.encode_value(stale))
    r.publish(name, wire.encode_value(newer))
    wait_for(lambda: seen, what="the newer value")
    assert seen == ["newer"] and ch.value == "newer" and ch.writer_id == "999"


def test_rapid_sets_are_coalesced(peer, name):
    ch = Channel(name, value=-1)
    cmd(peer, cmd="get", name=name)
    cmd(peer, cmd="callback", name=name)
    for i in range(1000):
        ch.value = i  # no yield: only the latest pending value is sent
    values = []
    while not values or values[-1] != 999:
        values.append(peer.expect("callback")["value"])
    assert len(values) < 10, values


def test_self_updates_false_suppresses_own_callbacks(peer, name):
    quiet = Channel(name, default_value=0, self_updates=False)
    seen = []
    quiet.register_callback(seen.append)
    quiet.value = 1
    cmd(peer, cmd="channel", name=name)
    cmd(peer, cmd="set", name=name, value=2)
    wait_for(lambda: seen, what="remote update")
    assert seen == [2]

    loud = Channel(f"{name}-loud", default_value=0)
    seen2 = []
    loud.register_callback(seen2.append)
    loud.value = 5
    assert seen2 == [5]


def test_setting_from_own_callback_raises(name):
    ch = Channel(name, default_value=0)
    errors = []

    def cb(value):
        try:
            ch.value = value + 1
        except RuntimeError as exc:
            errors.append(str(exc))

    ch.register_callback(cb)
    ch.value = 1
    assert errors and "own callbacks" in errors[0]
    assert ch.value == 1


# -- callbacks: better than BLISS ---------------------------------------------------------
def test_lambda_callbacks_keep_firing_and_bound_methods_do_not_keep_objects_alive(peer, name):
    ch = Channel(name, default_value=0)
    assert ch.value == 0  # the default is known before callbacks are registered
    seen = []
    ch.register_callback(lambda v: seen.append(v))
    gc.collect()

    class Listener:
        def __init__(self):
            self.values = []

        def on_value(self, v):
            self.values.append(v)

    listener = Listener()
    ch.register_callback(listener.on_value)
    ref = weakref.ref(listener)
    cmd(peer, cmd="channel", name=name)
    cmd(peer, cmd="set", name=name, value=1)
    values = listener.values
    wait_for(lambda: seen == [1] and values == [1], what="both callbacks")
    del listener
    gc.collect()
    assert ref() is None, "a registered bound method kept its object alive"
    cmd(peer, cmd="set", name=name, value=2)
    wait_for(lambda: seen == [1, 2], what="lambda callback after gc")
    assert len(ch.callbacks) == 1


def test_callback_reading_another_channel_does_not_deadlock(peer, name):
    """A callback that needs a query answered (only the listener can deliver it) works."""
    trigger = Channel(name, default_value=0)
    assert trigger.value == 0
    cmd(peer, cmd="channel", name=f"{name}-other", value="held by peer")
    results = []
    trigger.register_callback(lambda v: results.append(Channel(f"{name}-other", timeout=5).value))
    handoffs = trigger.bus.listener_handoffs
    cmd(peer, cmd="channel", name=name)
    cmd(peer, cmd="set", name=name, value=1)
    wait_for(lambda: results, what="the callback's read of another channel")
    assert results == ["held by peer"]
    assert trigger.bus.listener_handoffs == handoffs + 1
    # and the bus keeps working afterwards, with the new listener
    cmd(peer, cmd="set", name=f"{name}-other", value="updated")
    wait_for(lambda: Channel(f"{name}-other").value == "updated", what="later updates")


def test_unregister_callback_works_for_all_kinds_of_callables(name):
    ch = Channel(name, default_value=0)
    assert ch.value == 0
    seen, other = [], []

    def func(v):
        other.append(v)

    for cb in (seen.append, func, (lambda v: None)):
        ch.register_callback(cb)
    assert len(ch.callbacks) == 3
    ch.unregister_callback(seen.append)  # a new bound-method object, same callback
    ch.unregister_callback(func)
    assert len(ch.callbacks) == 1
    ch.value = 1
    assert seen == [] and other == []


def test_raising_callback_is_logged_and_isolated(peer, name, caplog):
    a = Channel(name, default_value=0)
    b = Channel(f"{name}-b", default_value=0)
    assert a.value == b.value == 0
    got_a, got_b = [], []

    def bad(value):
        raise ValueError("boom")

    a.register_callback(bad)
    a.register_callback(got_a.append)
    b.register_callback(got_b.append)
    cmd(peer, cmd="channel", name=name)
    cmd(peer, cmd="channel", name=f"{name}-b")
    with caplog.at_level(logging.ERROR, logger="beacon_ipy.channels"):
        cmd(peer, cmd="set_many", name=name, values=[1, 2, 3])
        cmd(peer, cmd="set_many", name=f"{name}-b", values=[1, 2, 3])
        wait_for(lambda: got_a == [1, 2, 3] and got_b == [1, 2, 3], what="good callbacks")
    assert sum("boom" in r.getMessage() or (r.exc_info and "boom" in str(r.exc_info[1]))
               for r in caplog.records) == 3


# -- safety -------------------------------------------------------------------------------
class _Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def _bliss_style_pickle(obj):
    """A pickle naming bliss.config.channels._Value, as a hostile BLISS-speaker would."""
    def short_str(text):  # SHORT_BINUNICODE
        return b"\x8c" + bytes((len(text),)) + text.encode()

    value_class = short_str(wire.BLISS_MODULE) + short_str("_Value") + b"\x93"  # STACK_GLOBAL
    return b"\x80\x04" + value_class + pickle.dumps(obj, 4)[2:-1] + b"\x81."  # NEWOBJ STOP


def test_hostile_messages_are_dropped_unexecuted_and_listener_survives(peer, name, tmp_path,
                                                                       caplog):
    ch = Channel(name, default_value=0)
    assert ch.value == 0
    seen = []
    ch.register_callback(seen.append)
    marker = tmp_path / "pwned"
    r = get_redis()
    with caplog.at_level(logging.WARNING, logger="beacon_ipy.channels"):
        r.publish(name, _bliss_style_pickle(("1", 1e12, _Evil(marker))))
        r.publish(name, pickle.dumps(_Evil(marker)))
        r.publish(f"{name}", b"not a pickle at all")
        cmd(peer, cmd="channel", name=name)
        cmd(peer, cmd="set", name=name, value="fine")
        wait_for(lambda: seen == ["fine"], what="a valid value after hostile ones")
    assert not marker.exists(), "a message from the bus was executed"
    assert any("posix.system" in r.getMessage() for r in caplog.records)


def test_unsafe_values_are_refused_at_set_with_nothing_lost(name):
    ch = Channel(name, value="kept")

    class Custom:
        pass

    for bad in (Custom(), lambda: 1, {"nested": [open]}):
        with pytest.raises(UnsafeValueError, match="cannot be sent"):
            ch.value = bad
    assert ch.value == "kept"
    ev = EventChannel(f"{name}-ev")
    with pytest.raises(UnsafeValueError):
        ev.post(Custom())


def test_every_subscriber_answers_every_query(peer, name):
    Channel(name, value="mine")
    assert cmd(peer, cmd="get", name=name)["value"] == "mine"  # the peer holds it too
    r = get_redis()
    ps = r.pubsub()
    ps.subscribe(name)
    ps.get_message(timeout=1)
    query_id = uuid.uuid4().hex
    subscribers = r.publish(name, wire.encode_query(name, query_id))
    assert subscribers == 3
    replies = []

    def collect():
        msg = ps.get_message(timeout=0.01)
        if msg and msg["type"] == "message":
            decoded = wire.decode(msg["data"])
            if isinstance(decoded, wire.WireReply) and decoded.id == query_id:
                replies.append(decoded)
        return len(replies) == subscribers - 1

    wait_for(collect, what="a reply from every other subscriber")
    ps.close()
    assert sorted(str(r.value.value) for r in replies) == ["mine", "mine"]


# -- EventChannel ---------------------------------------------------------------------------
def test_event_channel_ordered_batched_lossless_both_ways(peer, name):
    ev = EventChannel(name)
    batches = []
    ev.register_callback(batches.append)
    cmd(peer, cmd="event_channel", name=name)
    cmd(peer, cmd="event_callback", name=name)
    cmd(peer, cmd="post", name=name, values=[f"event {i}" for i in range(5000)])
    wait_for(lambda: sum(map(len, batches)) >= 5000, what="5000 events")
    assert [e for b in batches for e in b] == [f"event {i}" for i in range(5000)]
    assert len(batches) < 50, "events posted in a loop should travel batched"
    # and the other way, with numpy payloads
    for i in range(100):
        ev.post({"i": i, "data": numpy.full(3, i)})
    got = []
    while len(got) < 100:
        # (the peer first hears its own 5000 string events: posters receive their own)
        got += [v for v in jsoncodec.decode(peer.expect("events")["values"]) if isinstance(v, dict)]
    assert [g["i"] for g in got] == list(range(100))
    numpy.testing.assert_array_equal(got[42]["data"], numpy.full(3, 42))


def test_poster_receives_its_own_events(name):
    ev = EventChannel(name)
    got = []
    ev.register_callback(got.extend)
    for i in range(10):
        ev.post(i)
    wait_for(lambda: got == list(range(10)), what="own events")


# -- Cache -------------------------------------------------------------------------------------
class Device:
    def __init__(self, name):
        self.name = name


def test_cache_naming_and_clear_cache(peer, name):
    dev, other = Device(name), Device(f"{name}-other")
    c1 = Cache(dev, "position", default_value=0.0)
    c2 = Cache(other, "program", default_value="none")
    assert c1.name == f"{name}:position"
    c1.value, c2.value = 12.5, "prog.mac"
    cmd(peer, cmd="channel", name=c1.name)
    cmd(peer, cmd="callback", name=c1.name)
    clear_cache(dev)
    assert c1.value == 0.0 and c2.value == "prog.mac"
    # The peer's first callback may be 12.5 (its initial query answered after the
    # callback was registered); then the reset must arrive.
    seen = [peer.expect("callback")["value"]]
    if seen[0] != 0.0:
        seen.append(peer.expect("callback")["value"])
    assert seen in ([0.0], [12.5, 0.0]), seen
    clear_cache()
    assert c2.value == "none"
    assert set(cached_channels(dev)) == {c1}
    with pytest.raises(TypeError, match="no 'name'"):
        Cache(object(), "key")


# -- gevent patched and unpatched processes ---------------------------------------------
@pytest.mark.parametrize("patched", [False, True], ids=["unpatched", "monkey-patched"])
def test_works_in_patched_and_unpatched_processes(name, patched):
    with Peer("channel_peer.py", patch=patched) as a, Peer("channel_peer.py") as b:
        assert a.expect("ready")["patched"] is patched
        b.expect("ready")
        cmd(a, cmd="channel", name=name, value=[1, 2, 3])
        assert cmd(b, cmd="get", name=name)["value"] == [1, 2, 3]
        cmd(a, cmd="callback", name=name)
        cmd(b, cmd="set", name=name, value="changed")
        assert a.expect("callback")["value"] == "changed"


def test_a_redis_py_client_selects_its_server(name):
    """BLISS code passes ``redis=<redis.Redis>``: the channel uses that client's server."""
    from beacon_ipy.connection.client import url_of_client

    client = get_redis()
    assert url_of_client(client) == Channel(f"{name}-default", default_value=0).bus.url
    ch = Channel(name, value="via a client", redis=client)
    assert ch.bus is Channel(f"{name}-default").bus
