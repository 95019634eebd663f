"""A beacon_ipy channel peer for multi-process tests (same protocol as bliss_peer.py).

Speaks line-delimited JSON (values tagged by jsoncodec). Commands, each answered by
``{"event": "reply", ...}`` or ``{"event": "error", "message": ...}``:
channel, get, set, callback, event_channel, post, event_callback, raise_callback,
set_many, exit. Set PEER_MONKEY_PATCH=1 to run gevent-monkey-patched (as BLISS does).
"""

import os
import sys

if os.environ.get("PEER_MONKEY_PATCH") == "1":
    from gevent import monkey

    monkey.patch_all(thread=False)

import time  # noqa: E402

import gevent  # noqa: E402
import gevent.fileobject  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_io import commands, monkey_patched, say  # noqa: E402

from beacon_ipy.channels import Channel, EventChannel  # noqa: E402


def main():
    channels = {}
    callbacks = []  # keep nothing alive on purpose: beacon_ipy holds functions strongly
    stdin = gevent.fileobject.FileObjectPosix(sys.stdin.fileno(), "rb")
    say(event="ready", pid=os.getpid(), patched=monkey_patched())
    for cmd in commands(stdin):
        op = cmd.get("cmd")
        try:
            if op == "exit":
                from beacon_ipy.channels import close_all

                close_all()
                say(event="reply")
                return
            name = cmd.get("name")
            if op == "channel":
                kwargs = {k: cmd[k] for k in ("value", "default_value", "timeout") if k in cmd}
                if "self_updates" in cmd:
                    kwargs["self_updates"] = cmd["self_updates"]
                ch = channels[name] = Channel(name, **kwargs)
                ch.bus.wait_subscribed(name, 10)  # so the test's next query counts us
                say(event="reply")
            elif op == "get":
                ch = channels.get(name) or Channel(name)
                channels[name] = ch
                if "timeout" in cmd:
                    ch.timeout = cmd["timeout"]
                t0 = time.perf_counter()
                value = ch.value
                say(event="reply", value=value, elapsed=time.perf_counter() - t0)
            elif op == "set":
                channels.setdefault(name, Channel(name)).value = cmd["value"]
                say(event="reply")
            elif op == "set_many":
                # Sets values one by one, yielding between them so each is published.
                ch = channels.setdefault(name, Channel(name))
                for v in cmd["values"]:
                    ch.value = v
                    ch.bus.flush()
                say(event="reply")
            elif op == "callback":
                ch = channels.setdefault(name, Channel(name))
                ch.register_callback(
                    lambda value, n=name: say(event="callback", name=n, value=value))
                ch.bus.wait_subscribed(name, 10)
                say(event="reply")
            elif op == "raise_callback":
                def bad(value):
                    raise ValueError("this callback always fails")

                channels[name].register_callback(bad)
                callbacks.append(bad)
                say(event="reply")
            elif op == "event_channel":
                channels[name] = EventChannel(name)
                channels[name].bus.wait_subscribed(name, 10)
                say(event="reply")
            elif op == "post":
                ch = channels[name]
                for v in cmd["values"]:
                    ch.post(v)
                ch.bus.flush()
                say(event="reply")
            elif op == "event_callback":
                channels[name].register_callback(
                    lambda values, n=name: say(event="events", name=n, values=values))
                say(event="reply")
            else:
                say(event="error", message=f"unknown command {op!r}")
        except Exception as exc:  # noqa: BLE001 - report to the test
            say(event="error", message=f"{type(exc).__name__}: {exc}")


if __name__ == "__main__":
    main()
