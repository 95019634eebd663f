"""The "second process" of quickstart.ipynb: a simulated motor controller.

It shares three Beacon channels with every other process using the same Redis (the
notebook included)::

    <prefix>:velocity   Channel       how fast the motor moves (units/s); anyone may set it
    <prefix>:position   Channel       where the motor is; this process moves it, 0 <-> 10
    <prefix>:log        EventChannel  what happened, one event per line

Run it yourself in a terminal to watch a notebook from outside::

    python motor_process.py --prefix quickstart:motor

It prints one line ("motor <pid> ready: ...") once its channels answer, then runs until
Ctrl-C / SIGTERM, ``--lifetime`` seconds, or until the process that started it exits.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

import gevent
import gevent.event

from beacon_ipy.channels import Channel, EventChannel, close_all

LOW, HIGH = 0.0, 10.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prefix", default="quickstart:motor", help="channel name prefix")
    parser.add_argument("--period", type=float, default=0.1, help="seconds between moves")
    parser.add_argument("--lifetime", type=float, default=3600.0,
                        help="stop after this many seconds (default: one hour)")
    args = parser.parse_args(argv)

    pid = os.getpid()
    velocity = Channel(f"{args.prefix}:velocity", default_value=1.0)
    position = Channel(f"{args.prefix}:position", default_value=0.0)
    log = EventChannel(f"{args.prefix}:log")

    def on_velocity(value):
        log.post(f"motor {pid}: velocity is now {value!r}")

    velocity.register_callback(on_velocity)
    # Hold the position from now on (a default alone is never sent to other processes).
    position.value = float(position.value)
    print(f"motor {pid} ready: position {position.value}, velocity {velocity.value}",
          flush=True)
    log.post(f"motor {pid}: started")

    stop = gevent.event.Event()
    gevent.signal_handler(signal.SIGTERM, stop.set)  # terminate(): stop cleanly
    parent = os.getppid()
    direction = 1.0
    deadline = time.monotonic() + args.lifetime
    try:
        while time.monotonic() < deadline and os.getppid() == parent:
            if stop.wait(args.period):  # channel callbacks run while this waits
                break
            try:
                speed = abs(float(velocity.value))
            except (TypeError, ValueError):
                speed = 0.0  # someone set a velocity that is not a number: stand still
            new = position.value + direction * speed * args.period
            if not LOW <= new <= HIGH:
                direction = -direction
                new = min(max(new, LOW), HIGH)
            position.value = round(new, 3)
    except KeyboardInterrupt:
        pass
    log.post(f"motor {pid}: stopped at {position.value}")
    close_all()  # sends what is pending, then disconnects
    return 0


if __name__ == "__main__":
    sys.exit(main())
