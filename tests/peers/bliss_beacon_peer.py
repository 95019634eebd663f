"""A REAL BLISS 2.4 process that finds Redis the BLISS way: only ``BEACON_HOST`` is set.

Runs under the full-BLISS interpreter (``tests/beacon_env.py``); never imports beacon_ipy.
Channels are created without a ``redis=`` argument, so BLISS asks the Beacon server for its
settings Redis exactly as a beamline process does. Speaks ``tests/peer.py``'s protocol (one
JSON command per stdin line, one JSON event per stdout line, values tagged by jsoncodec).

Commands: ``where`` (reply ``settings``/``data``: the Redis URLs BLISS got from Beacon);
``channel`` name [value] [default_value]; ``get`` name; ``set`` name value; ``callback`` name
(then ``{"event": "callback", "name", "value"}`` per call); ``exit``.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# isort: off
import bliss  # noqa: E402,F401  (monkey-patches first, as in every BLISS process)
from bliss.config.channels import Channel  # noqa: E402
from bliss.config.conductor.client import get_default_connection  # noqa: E402
import gevent  # noqa: E402
import gevent.fileobject  # noqa: E402

import jsoncodec  # noqa: E402
# isort: on

_STDOUT = sys.stdout


def emit(**message) -> None:
    _STDOUT.write(jsoncodec.dumps(message) + "\n")
    _STDOUT.flush()


def main() -> int:
    if not os.environ.get("BEACON_HOST") or os.environ.get("BEACON_REDIS_URL"):
        print("bliss_beacon_peer: needs BEACON_HOST and no BEACON_REDIS_URL", file=sys.stderr)
        return 2
    channels: dict[str, Channel] = {}
    callbacks = []  # BLISS holds callbacks weakly: keep them alive
    stdin = gevent.fileobject.FileObjectPosix(sys.stdin.fileno(), "rb", close=False)
    emit(event="ready", pid=os.getpid())
    while True:
        line = stdin.readline()
        if not line:
            return 0
        command = jsoncodec.loads(line)
        cmd, name = command.get("cmd"), command.get("name")
        try:
            if cmd == "exit":
                gevent.sleep(0.1)  # let BLISS's sender greenlet flush a last set
                emit(event="reply", cmd=cmd)
                return 0
            if cmd == "where":
                connection = get_default_connection()
                emit(event="reply", cmd=cmd,
                     settings=connection.get_redis_connection_address().url,
                     data=connection.get_redis_data_server_connection_address().url)
            elif cmd == "channel":
                kwargs = {k: command[k] for k in ("value", "default_value") if k in command}
                channel = channels[name] = Channel(name, **kwargs)
                if not channel._subscribed_event.wait(10):
                    raise TimeoutError(f"BLISS did not subscribe to {name!r}")
                emit(event="reply", cmd=cmd)
            elif cmd == "get":
                emit(event="reply", cmd=cmd, value=channels[name].value)
            elif cmd == "set":
                channels[name].value = command["value"]
                emit(event="reply", cmd=cmd)
            elif cmd == "callback":
                def callback(value, name=name):
                    emit(event="callback", name=name, value=value)

                callbacks.append(callback)
                channels[name].register_callback(callback)
                emit(event="reply", cmd=cmd)
            else:
                emit(event="error", message=f"unknown command {cmd!r}")
        except Exception as exc:  # noqa: BLE001  (reported to the test)
            emit(event="error", cmd=cmd, message=f"{type(exc).__name__}: {exc}")


if __name__ == "__main__":
    sys.exit(main())
