"""Channels survive a Redis restart: resubscribe, re-announce held values, resume waits."""

from __future__ import annotations

import uuid

import gevent
from peer import Peer, cmd
from waiting import wait_for

from beacon_ipy.channels import Bus, Channel, EventChannel


def test_channels_come_back_after_server_restart(own_redis):
    url = own_redis.url
    name = f"reconnect-{uuid.uuid4().hex[:8]}"
    bus = Bus.get(url)
    held = Channel(name, value="held before restart", redis=url)
    seen = []
    held.register_callback(seen.append)
    events = EventChannel(f"{name}-ev", redis=url)
    got_events = []
    events.register_callback(got_events.extend)
    env = {"BEACON_REDIS_URL": url}
    with Peer("channel_peer.py", env=env) as peer:
        peer.expect("ready")
        assert cmd(peer, cmd="get", name=name)["value"] == "held before restart"
        cmd(peer, cmd="channel", name=f"{name}-later", value=123)  # held by the peer only
        before = bus.reconnections

        own_redis.restart()  # every connection drops; the new server knows nothing

        # A reader of the peer's value, started while the server is down.
        waiter_channel = Channel(f"{name}-later", redis=url, timeout=20)
        waiter = gevent.spawn(lambda: waiter_channel.value)

        wait_for(lambda: bus.reconnections > before, timeout=20, what="our bus to reconnect")
        # The peer reconnects too, then a value set there reaches our callback.
        wait_for(lambda: (cmd(peer, cmd="set_many", name=name, values=["after restart"]),
                          seen and seen[-1] == "after restart")[1],
                 timeout=20, what="a value from the peer after the restart")
        # The reader finishes without error, and converges on the peer's value, which
        # the peer re-announces after its own reconnection (if the reader's query ran
        # before the peer was back, it first saw the default, None).
        assert waiter.get(timeout=20) in (None, 123)
        wait_for(lambda: waiter_channel.value == 123, timeout=20, what="the peer's value")

    # A brand-new process reads the value we hold: it was re-announced / is answered.
    with Peer("channel_peer.py", env=env) as fresh:
        fresh.expect("ready")
        assert cmd(fresh, cmd="get", name=name)["value"] == "after restart"
        # Event channels work again too.
        cmd(fresh, cmd="event_channel", name=f"{name}-ev")
        cmd(fresh, cmd="post", name=f"{name}-ev", values=[1, 2, 3])
        wait_for(lambda: got_events[-3:] == [1, 2, 3], what="events after restart")
    bus.close()


def test_held_value_is_reannounced_to_holders_after_restart(own_redis):
    """After a restart, a peer holding an older value receives ours again."""
    url = own_redis.url
    name = f"reannounce-{uuid.uuid4().hex[:8]}"
    bus = Bus.get(url)
    ch = Channel(name, value="v1", redis=url)
    with Peer("channel_peer.py", env={"BEACON_REDIS_URL": url}) as peer:
        peer.expect("ready")
        assert cmd(peer, cmd="get", name=name)["value"] == "v1"
        cmd(peer, cmd="callback", name=name)
        before = bus.reconnections
        own_redis.kill()  # a crash, not a clean shutdown
        ch.value = "set while the server was down"  # kept pending, sent on reconnection
        own_redis.start()
        wait_for(lambda: bus.reconnections > before, timeout=20, what="reconnection")
        assert peer.expect("callback", timeout=20)["value"] == "set while the server was down"
    bus.close()
