"""``beacon-ipy channel-demo``: two processes sharing a channel, in one command.

The command starts a second process (``--role writer``) that moves a simulated motor:
it sets ``demo:motor:position`` and posts ``demo:log`` events. This process, the
reader, prints each change as its callbacks receive them, then checks that it saw the
final position. With nothing configured both use the per-user embedded Redis.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import gevent
import gevent.event

from beacon_ipy.channels import Channel, EventChannel, close_all
from beacon_ipy.connection import resolve_url


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=int, default=10, help="motor moves (default 10)")
    parser.add_argument("--period", type=float, default=0.2, help="seconds between moves")
    parser.add_argument("--role", choices=["reader", "writer"], default="reader",
                        help=argparse.SUPPRESS)


def _writer(steps: int, period: float) -> int:
    position = Channel("demo:motor:position", default_value=0.0)
    log = EventChannel("demo:log")
    start = position.value
    for i in range(1, steps + 1):
        position.value = round(start + i * 0.5, 3)
        log.post(f"writer {__import__('os').getpid()}: moved to {position.value}")
        gevent.sleep(period)
    close_all()
    return 0


def _reader(args: argparse.Namespace) -> int:
    url = resolve_url()
    print(f"Redis: {url}")
    position = Channel("demo:motor:position", default_value=0.0)
    start = position.value
    final = round(start + args.steps * 0.5, 3)
    done = gevent.event.Event()

    def on_position(value):
        print(f"  reader sees position = {value}")
        if value == final:
            done.set()

    position.register_callback(on_position)
    EventChannel("demo:log").register_callback(lambda evs: [print(f"  event: {e}") for e in evs])
    cmd = [sys.executable, "-m", "beacon_ipy.cli", "--redis-url", url, "channel-demo",
           "--role", "writer", "--steps", str(args.steps), "--period", str(args.period)]
    print(f"started writer process: {' '.join(cmd[2:])}")
    t0 = time.monotonic()
    writer = subprocess.Popen(cmd)
    ok = done.wait(timeout=30 + args.steps * args.period)
    # the writer exits by itself after its last move
    while writer.poll() is None and time.monotonic() - t0 < 60:
        gevent.sleep(0.05)
    close_all()
    if not ok:
        print("reader never saw the final position", file=sys.stderr)
        return 1
    print(f"OK: two processes shared 'demo:motor:position' (final {final}) through {url}")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.role == "writer":
        return _writer(args.steps, args.period)
    return _reader(args)
