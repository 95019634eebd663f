"""A test peer driving REAL BLISS 2.4 channels, to prove interoperability with beacon_ipy.

Runs under the BLISS virtualenv's interpreter (``tests/bliss_env.py``), never under
beacon_ipy's, and must not import beacon_ipy: what it does on the wire is by definition
what BLISS does. It connects ``bliss.config.channels`` to the Redis server named by
``BEACON_REDIS_URL`` (no Beacon server needed) and speaks ``tests/peer.py``'s protocol:
one JSON command per stdin line, one JSON event per stdout line, values tagged by
``jsoncodec`` so numpy arrays, tuples and nested dicts survive the pipe.

Events: ``{"event": "ready", "pid", "bliss", "numpy", "redis"}`` at start; one
``{"event": "reply", ...}`` or ``{"event": "error", "message"}`` per command;
``{"event": "callback", "name", "value"}`` per Channel callback call and
``{"event": "events", "name", "values"}`` per EventChannel callback call, at any time
(stdin is read cooperatively, so BLISS's listener greenlets run while the peer is idle).

Commands (``cmd``):

- ``channel`` name [value] [default_value] [timeout] [self_updates]: create a Channel
  (``value`` only passed when present: without it BLISS queries the other holders);
- ``get`` name [timeout]: reply ``value`` and ``elapsed`` seconds (waiting as BLISS does;
  ``TimeoutError`` comes back as an error event naming it);
- ``set`` name value;
- ``callback`` name: report every callback call of that Channel;
- ``lambda_callback`` name: register a lambda (reporting ``lambda_callback`` events) and
  keep no reference to it; ``raise_callback`` name: register a callback that raises;
- ``event_channel`` name; ``post`` name values (posted in a tight loop, so BLISS batches);
  ``event_callback`` name: report every EventChannel callback call;
- ``ping``; ``exit`` (pending sends are flushed first, best effort).

A ``channel``/``event_channel`` reply means BLISS has subscribed: updates published after
it reach this peer.
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# BLISS first: importing it monkey-patches the standard library.
# isort: off
from bliss.config.channels import Bus, Channel, EventChannel  # noqa: E402
import gevent  # noqa: E402
import gevent.fileobject  # noqa: E402
import numpy  # noqa: E402
import redis  # noqa: E402

import jsoncodec  # noqa: E402  (our dir is on sys.path now)
# isort: on

_STDOUT = sys.stdout
SUBSCRIBE_TIMEOUT = 10.0


def _wait_subscribed(channel) -> None:
    """Reply only once BLISS has subscribed, so that a reply means "will see updates"."""
    if not channel._subscribed_event.wait(SUBSCRIBE_TIMEOUT):
        raise TimeoutError(f"BLISS did not subscribe to {channel.name!r} "
                           f"within {SUBSCRIBE_TIMEOUT} s")


def emit(**message) -> None:
    """Write one JSON event line (greenlets never interleave within one write)."""
    _STDOUT.write(jsoncodec.dumps(message) + "\n")
    _STDOUT.flush()


class BlissPeer:
    """Holds strong references to channels and callbacks (BLISS keeps weak ones only)."""

    def __init__(self, url: str):
        # One redis.Redis for the whole process: BLISS's Bus is cached per redis object.
        self.redis = redis.Redis.from_url(url)
        self.channels: dict[str, Channel] = {}
        self.event_channels: dict[str, EventChannel] = {}
        self.callbacks: list = []

    def _channel(self, name: str) -> Channel:
        try:
            return self.channels[name]
        except KeyError:
            raise KeyError(f"no Channel {name!r} in this peer: send "
                           f"{{'cmd': 'channel', 'name': {name!r}}} first") from None

    def _event_channel(self, name: str) -> EventChannel:
        try:
            return self.event_channels[name]
        except KeyError:
            raise KeyError(f"no EventChannel {name!r} in this peer: send "
                           f"{{'cmd': 'event_channel', 'name': {name!r}}} first") from None

    def flush(self, timeout: float = 2.0) -> None:
        """Best effort: let BLISS's send greenlet publish what is pending before exiting."""
        bus = Bus(self.redis)
        deadline = time.monotonic() + timeout
        while (bus._pending_updates or bus._send_event.is_set()) and time.monotonic() < deadline:
            gevent.sleep(0.001)
        gevent.sleep(0.01)  # the last pipeline may still be on the wire

    def cmd_ping(self) -> dict:
        return {}

    def cmd_channel(self, name: str, **options) -> dict:
        kwargs = {key: options[key] for key in ("value", "default_value", "timeout",
                                                "self_updates") if key in options}
        unknown = set(options) - set(kwargs)
        if unknown:
            raise TypeError(f"channel: unknown options {sorted(unknown)}")
        channel = self.channels[name] = Channel(name, redis=self.redis, **kwargs)
        _wait_subscribed(channel)
        return {}

    def cmd_get(self, name: str, timeout: float | None = None) -> dict:
        channel = self._channel(name)
        if timeout is not None:
            channel.timeout = timeout
        t0 = time.perf_counter()
        value = channel.value
        return {"value": value, "elapsed": time.perf_counter() - t0}

    def cmd_set(self, name: str, value) -> dict:
        self._channel(name).value = value
        return {}

    def cmd_callback(self, name: str) -> dict:
        def callback(value, name=name):
            emit(event="callback", name=name, value=value)

        self.callbacks.append(callback)
        self._channel(name).register_callback(callback)
        return {}

    def cmd_lambda_callback(self, name: str) -> dict:
        """Register a lambda and keep no reference to it, as a user would."""
        self._channel(name).register_callback(
            lambda value: emit(event="lambda_callback", name=name, value=value))
        return {}

    def cmd_raise_callback(self, name: str) -> dict:
        """Register a callback that always raises (kept alive)."""
        def bad(value):
            raise ValueError("this callback always fails")

        self.callbacks.append(bad)
        self._channel(name).register_callback(bad)
        return {}

    def cmd_event_channel(self, name: str) -> dict:
        channel = self.event_channels[name] = EventChannel(name, redis=self.redis)
        _wait_subscribed(channel)
        return {}

    def cmd_post(self, name: str, values: list) -> dict:
        channel = self._event_channel(name)
        for value in values:
            channel.post(value)
        return {"posted": len(values)}

    def cmd_event_callback(self, name: str) -> dict:
        def callback(values, name=name):
            emit(event="events", name=name, values=values)

        self.callbacks.append(callback)
        self._event_channel(name).register_callback(callback)
        return {}

    def handle(self, command: dict) -> bool:
        """Run one command and emit its reply; False when the peer must exit."""
        cmd = command.pop("cmd", None)
        if cmd == "exit":
            self.flush()
            emit(event="reply", cmd="exit")
            return False
        method = getattr(self, f"cmd_{cmd}", None)
        if method is None:
            emit(event="error", message=f"unknown command {cmd!r}")
            return True
        try:
            reply = method(**command)
        except Exception as exc:
            emit(event="error", cmd=cmd, message=f"{type(exc).__name__}: {exc}")
        else:
            emit(event="reply", cmd=cmd, **reply)
        return True


def main() -> int:
    url = os.environ.get("BEACON_REDIS_URL")
    if not url:
        print("bliss_peer: BEACON_REDIS_URL is not set", file=sys.stderr)
        return 2
    import bliss

    peer = BlissPeer(url)
    # Cooperative stdin: waiting for a command yields to the hub, so listeners keep running.
    stdin = gevent.fileobject.FileObjectPosix(sys.stdin.fileno(), "rb", close=False)
    emit(event="ready", pid=os.getpid(), bliss=getattr(bliss, "__version__", "?"),
         numpy=numpy.__version__, redis=redis.__version__)
    while True:
        line = stdin.readline()
        if not line:
            return 0
        if not line.strip():
            continue
        try:
            command = jsoncodec.loads(line)
        except ValueError as exc:
            emit(event="error", message=f"bad JSON line {line!r}: {exc}")
            continue
        if not peer.handle(command):
            return 0


if __name__ == "__main__":
    sys.exit(main())
