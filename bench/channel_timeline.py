"""Where a channel round trip's time goes: a timeline stamped in both processes.

A ping-pong between two beacon-ipy processes (as in ``bench/channels.py``); both stamp
``time.perf_counter`` (CLOCK_MONOTONIC on Linux, comparable across processes) when a
``PUBLISH`` is written (``CooperativeSocket.sendall``, before and after) and when the
listener reads the peer's message (``SubscriberConnection.read``). Prints the median of
each segment of a round and a final JSON line. Usage::

    python bench/channel_timeline.py [--rounds 3000] [--patched]

The stamps cost ≈ 1 µs each; compare segments, not the total, with ``bench/channels.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time


def _hook(rx_name: str, log: list) -> None:
    from beacon_ipy.channels import subscriber
    from beacon_ipy.connection import client

    clock = time.perf_counter
    read = subscriber.SubscriberConnection.read
    sendall = client.CooperativeSocket.sendall

    def stamped_read(self):
        message = read(self)
        if message is not None and message[0] == rx_name:
            log.append(("rx", clock()))
        return message

    def stamped_sendall(self, data, flags=0):
        t0 = clock()
        sendall(self, data, flags)
        if b"PUBLISH" in bytes(data[:60]):
            log.append(("tx", t0, clock()))

    subscriber.SubscriberConnection.read = stamped_read
    client.CooperativeSocket.sendall = stamped_sendall


def role(which: str, rounds: int, out: str) -> None:
    if os.environ.get("BENCH_MONKEY_PATCH") == "1":
        from gevent import monkey

        monkey.patch_all(thread=False)
    log: list = []
    _hook("tl:ping" if which == "pong" else "tl:pong", log)
    import gevent.event
    import gevent.fileobject

    from beacon_ipy import channels

    if which == "pong":
        pong = channels.Channel("tl:pong", default_value=-1)
        ping = channels.Channel("tl:ping", default_value=-1)
        pong.value, ping.value  # noqa: B018 - wait until known

        def on_ping(value):
            pong.value = value

        ping.register_callback(on_ping)
        print("ready", flush=True)
        gevent.fileobject.FileObjectPosix(sys.stdin.fileno(), "rb").read()
        with open(out, "w") as f:
            json.dump({"log": log}, f)
        return
    seen = gevent.event.Event()
    expected = {"v": None}

    def on_pong(value):
        if value == expected["v"]:
            seen.set()

    ping = channels.Channel("tl:ping")
    pong = channels.Channel("tl:pong")
    ping.value, pong.value  # noqa: B018
    pong.register_callback(on_pong)
    gevent.sleep(0.2)
    del log[:]
    spans = []
    for i in range(rounds):
        seen.clear()
        expected["v"] = i
        t0 = time.perf_counter()
        ping.value = i
        if not seen.wait(5):
            raise RuntimeError(f"no pong for {i}")
        spans.append((t0, time.perf_counter()))
    with open(out, "w") as f:
        json.dump({"log": log, "rounds": spans}, f)


SEGMENTS = ("driver: set until its send starts", "driver: send system call",
            "redis + pong wakes and reads",
            "pong: read until its send starts", "pong: send system call",
            "redis + driver wakes and reads", "driver: read until waiter resumes", "total")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3000)
    parser.add_argument("--patched", action="store_true", help="gevent-monkey-patched")
    parser.add_argument("--role", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role:
        role(args.role, args.rounds, args.out)
        return
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from beacon_ipy.connection.private import PrivateRedis

    with tempfile.TemporaryDirectory() as tmp, PrivateRedis() as server:
        env = dict(os.environ, BEACON_REDIS_URL=server.url,
                   BENCH_MONKEY_PATCH="1" if args.patched else "0")
        me = [sys.executable, os.path.abspath(__file__), "--rounds", str(args.rounds)]
        pong_out, drv_out = os.path.join(tmp, "pong.json"), os.path.join(tmp, "drv.json")
        pong = subprocess.Popen(me + ["--role", "pong", "--out", pong_out], env=env,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if "ready" not in pong.stdout.readline():
            raise RuntimeError("the pong process did not start")
        subprocess.run(me + ["--role", "driver", "--out", drv_out], env=env, check=True)
        pong.stdin.close()
        pong.wait(timeout=30)
        with open(drv_out) as f:
            drv = json.load(f)
        with open(pong_out) as f:
            pong_log = json.load(f)["log"]
    spans = drv["rounds"]
    n = len(spans)
    d_rx = [e[1] for e in drv["log"] if e[0] == "rx"]
    d_tx = [e for e in drv["log"] if e[0] == "tx"]
    p_rx = [e[1] for e in pong_log if e[0] == "rx"][-n:]
    p_tx = [e for e in pong_log if e[0] == "tx"][-n:]
    if not (len(d_rx) == len(d_tx) == len(p_rx) == len(p_tx) == n):
        raise RuntimeError("stamps do not match rounds one to one; run again")
    segments: dict[str, list[float]] = {name: [] for name in SEGMENTS}
    for i in range(min(100, n // 10), n):
        t0, t1 = spans[i]
        values = (d_tx[i][1] - t0, d_tx[i][2] - d_tx[i][1], p_rx[i] - d_tx[i][2], p_tx[i][1] - p_rx[i],
                  p_tx[i][2] - p_tx[i][1], d_rx[i] - p_tx[i][2], t1 - d_rx[i], t1 - t0)
        for name, value in zip(SEGMENTS, values, strict=True):
            segments[name].append(value)
    result = {name: round(statistics.median(v) * 1e6, 1) for name, v in segments.items()}
    for name, value in result.items():
        print(f"{name:36} {value:7.1f} us (median)")
    print(json.dumps({"rounds": n, "patched": args.patched, "median_us": result}))


if __name__ == "__main__":
    main()
