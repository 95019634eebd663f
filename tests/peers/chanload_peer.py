"""A beacon_ipy channel peer for the load tests (tests/test_channels_load.py).

Same line protocol as ``channel_peer.py`` (one JSON command per stdin line, one JSON
event per stdout line). It keeps, per channel, the last value its callbacks saw, so a
test asks for the state at the end instead of reading thousands of callback lines.

Commands (``cmd``), each answered by ``{"event": "reply", ...}`` or ``{"event": "error"}``:

- ``open`` name [default] [slow_on other]: (re)create the Channel (closing an earlier
  one: a fresh query), register the recording callback (after a slow one, see
  :class:`Recorder`, if ``other`` is given), reply once subscribed;
- ``hammer`` name tag count [burst] [seed]: set ``f"{tag}-{i}"`` ``count`` times in a
  tight loop, yielding to gevent only every few sets (random bursts up to ``burst``), so
  the sender coalesces; then flush; reply ``last`` (the last value set);
- ``set`` name value: one set, flushed;
- ``set_then_block`` name values key: set every value in a row without yielding (the
  first is written at once, the rest wait in the coalescing queue), reply, then block
  the whole process (hub included) in a plain, non-gevent BLPOP on Redis list ``key``
  until the test pushes to it: a process frozen by the OS or by a long computation;
- ``open_then_block`` name default key: connect the bus (another channel), create the
  Channel (its SUBSCRIBE is written at once, its query has not run yet), reply, then block as above: a subscriber that is
  counted by a query but answers late;
- ``block`` key: reply, then block as above;
- ``state`` name: reply ``value`` (``Channel.value``), ``timestamp``, ``writer``,
  ``last_callback``, ``callbacks`` (count), ``querying``, ``reconnections``,
  ``slow_done``;
- ``monitor`` name: record every message on the channel in Redis's order, from a raw
  redis-py subscriber that answers every query "no value" (as a subscriber holding
  nothing must); ``log`` name: reply ``entries`` (``["value", writer, timestamp, value]``,
  ``["query", id]``, ``["reply", id, value or None]``) up to a sync message published
  now, so everything published before the request is in it;
- ``exit``.

``CHANLOAD_CLOCK_OFFSET=seconds``: this process's wall clock runs that far ahead (or
behind), as on a machine whose clock is off. Set ``PEER_MONKEY_PATCH=1`` to run
gevent-monkey-patched, as BLISS processes and the beacon kernel do.
"""

import os
import sys
import time

if os.environ.get("PEER_MONKEY_PATCH") == "1":
    from gevent import monkey

    monkey.patch_all(thread=False)

_OFFSET = float(os.environ.get("CHANLOAD_CLOCK_OFFSET", "0") or 0)
if _OFFSET:
    _real_time = time.time

    def _skewed_time() -> float:
        return _real_time() + _OFFSET

    time.time = _skewed_time

import random  # noqa: E402

import gevent  # noqa: E402
import gevent.event  # noqa: E402
import gevent.fileobject  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_io import commands, monkey_patched, say  # noqa: E402

from beacon_ipy.channels import Channel  # noqa: E402

MISSING = "<no callback yet>"


def block_on(key: str) -> None:
    """Block the whole process (no gevent) until the test pushes to list ``key``."""
    import redis

    if monkey_patched():
        raise RuntimeError("blocking needs an unpatched peer (a patched BLPOP would yield)")
    url = os.environ["BEACON_REDIS_URL"]
    client = redis.Redis.from_url(url)
    client.blpop([key], timeout=60)
    client.close()


class Recorder:
    """One channel and what its callbacks saw.

    With ``slow_on`` and ``other``: a first callback that, for the value ``slow_on``
    only, reads channel ``other`` (a beacon-ipy wait: the listener hands off) before the
    recording callback runs; ``slow_done`` counts its completions.
    """

    def __init__(self, name: str, default, slow_on=None, other: str | None = None):
        self.last = MISSING
        self.count = 0
        self.slow_done = 0
        self.slow_on = slow_on
        self.other = other
        self.channel = Channel(name, default_value=default)
        if other is not None:
            self.channel.register_callback(self.slow)
        self.channel.register_callback(self.seen)

    def slow(self, value) -> None:
        if value == self.slow_on:
            Channel(self.other).get(timeout=60)
            self.slow_done += 1

    def seen(self, value) -> None:
        self.last = value
        self.count += 1


class Monitor:
    """A raw subscriber (no beacon_ipy channel) recording the wire, answering queries."""

    def __init__(self, name: str):
        from beacon_ipy.connection import new_client

        self.name = name
        self.sync_name = f"{name}:chanload-sync"
        self.client = new_client(os.environ["BEACON_REDIS_URL"],
                                 client_name="chanload-monitor")
        self.pubsub = self.client.pubsub()
        self.entries: list = []
        self.synced = gevent.event.Event()
        self.subscribed = gevent.event.Event()
        self.pubsub.subscribe(name, self.sync_name)
        self.greenlet = gevent.spawn(self.run)

    def run(self) -> None:
        from beacon_ipy.channels import wire

        confirmed = 0
        for msg in self.pubsub.listen():
            if msg["type"] == "subscribe":
                confirmed += 1
                if confirmed == 2:
                    self.subscribed.set()
                continue
            if msg["type"] != "message":
                continue
            if msg["channel"].decode() == self.sync_name:
                self.synced.set()
                continue
            decoded = wire.decode(msg["data"])
            if type(decoded) is wire.WireValue:
                self.entries.append(["value", decoded.id, decoded.timestamp, decoded.value])
            elif type(decoded) is wire.WireQuery:
                self.entries.append(["query", decoded.id])
                self.client.publish(self.name, wire.encode_reply(self.name, decoded.id, None))
            else:
                value = None if decoded.value is None else list(decoded.value)
                self.entries.append(["reply", decoded.id, value])

    def log(self) -> list:
        self.synced.clear()
        self.client.publish(self.sync_name, b"sync")
        if not self.synced.wait(30):
            raise TimeoutError("the monitor did not see its own sync message within 30 s")
        return list(self.entries)


def main():
    monitors: dict[str, Monitor] = {}
    recorders: dict[str, Recorder] = {}
    stdin = gevent.fileobject.FileObjectPosix(sys.stdin.fileno(), "rb")
    say(event="ready", pid=os.getpid(), patched=monkey_patched())
    for cmd in commands(stdin):
        op = cmd.get("cmd")
        name = cmd.get("name")
        try:
            if op == "exit":
                from beacon_ipy.channels import close_all

                close_all()
                say(event="reply")
                return
            if op in ("open", "open_then_block"):
                old = recorders.pop(name, None)
                if old is not None:
                    old.channel.close()
                if op == "open_then_block":
                    # A connected bus first, so that creating the channel below writes
                    # its SUBSCRIBE at once and yields nothing (its query never runs).
                    warm = Channel(f"{name}:warm-up", value=0)
                    warm.bus.wait_subscribed(warm.name, 10)
                rec = recorders[name] = Recorder(name, cmd.get("default"),
                                                 cmd.get("slow_on"), cmd.get("other"))
                if op == "open_then_block":
                    say(event="reply")
                    block_on(cmd["key"])
                    continue
                rec.channel.bus.wait_subscribed(name, 10)
                say(event="reply")
            elif op == "hammer":
                ch = recorders[name].channel
                rng = random.Random(cmd.get("seed", 0))
                burst = cmd.get("burst", 8)
                next_yield = rng.randint(1, burst)
                last = None
                for i in range(cmd["count"]):
                    last = f"{cmd['tag']}-{i}"
                    ch.value = last
                    next_yield -= 1
                    if next_yield == 0:
                        gevent.sleep(0)
                        next_yield = rng.randint(1, burst)
                if not ch.bus.flush(30):
                    raise TimeoutError("sets not written within 30 s")
                say(event="reply", last=last, timestamp=ch.timestamp)
            elif op == "set":
                ch = recorders[name].channel
                ch.value = cmd["value"]
                if not ch.bus.flush(30):
                    raise TimeoutError("set not written within 30 s")
                say(event="reply", timestamp=ch.timestamp)
            elif op == "block":
                say(event="reply")
                block_on(cmd["key"])
            elif op == "set_then_block":
                ch = recorders[name].channel
                for value in cmd["values"]:
                    ch.value = value
                say(event="reply", timestamp=ch.timestamp)
                block_on(cmd["key"])
            elif op == "monitor":
                monitors[name] = Monitor(name)
                if not monitors[name].subscribed.wait(10):
                    raise TimeoutError("monitor not subscribed within 10 s")
                say(event="reply")
            elif op == "log":
                say(event="reply", entries=monitors[name].log())
            elif op == "state":
                rec = recorders[name]
                ch = rec.channel
                say(event="reply", value=ch.value, timestamp=ch.timestamp,
                    writer=ch.writer_id, last_callback=rec.last, callbacks=rec.count,
                    querying=ch.querying, reconnections=ch.bus.reconnections,
                    slow_done=rec.slow_done)
            else:
                say(event="error", message=f"unknown command {op!r}")
        except Exception as exc:  # noqa: BLE001 - report to the test
            say(event="error", message=f"{type(exc).__name__}: {exc}")


if __name__ == "__main__":
    main()
