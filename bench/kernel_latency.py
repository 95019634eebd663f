"""Publish -> greenlet latency in an idle Jupyter kernel, vs a plain gevent process.

A listener greenlet subscribed to a Redis channel records, for each message, the time
between the publisher's ``time.monotonic()`` just before PUBLISH and the greenlet
receiving it (CLOCK_MONOTONIC is system-wide on Linux, so the two processes' clocks
agree). Messages are spaced by 2-6 ms (random, so that they do not beat with any
polling period) and nothing else is sent to the kernel meanwhile: it is idle.

Scenarios:
  process       a plain Python process whose main greenlet waits in gevent (reference)
  beacon        the beacon kernel (beacon_ipy.jupyter.kernel)
  stock+gevent  a stock ipykernel after beacon_ipy.jupyter.eventloop.enable_integration()

Also reported: the idle kernel's CPU use (listener subscribed, no traffic) over 2 s.

Run: python bench/kernel_latency.py [--messages 400]
Prints one line per scenario with ratios to the reference, then a final JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

from beacon_ipy.connection import get_redis
from beacon_ipy.connection.private import PrivateRedis
from beacon_ipy.jupyter.kernelspec import write_kernelspec

CHANNEL = "bench:kernel_latency"
RESULTS = "bench:kernel_latency:results"

LISTENER = f"""
import json, time, gevent
from beacon_ipy.connection import get_redis
_lat = []
_pubsub = get_redis().pubsub(ignore_subscribe_messages=True)
_pubsub.subscribe({CHANNEL!r})
def _listen():
    for message in _pubsub.listen():
        now = time.monotonic()
        if message["data"] == b"stop":
            get_redis().rpush({RESULTS!r}, json.dumps(_lat))
            _lat.clear()
            continue
        _lat.append(now - float(message["data"]))
_listener = gevent.spawn(_listen)
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def wait_subscribed(redis, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while redis.pubsub_numsub(CHANNEL)[0][1] < 1:
        if time.monotonic() > deadline:
            raise TimeoutError("the listener never subscribed")
        time.sleep(0.01)


def measure(redis, messages: int, pid: int) -> dict:
    """Publish ``messages`` timestamps with the listener's process idle; return stats."""
    redis.delete(RESULTS)
    wait_subscribed(redis)
    proc = psutil.Process(pid)
    proc.cpu_percent(None)
    time.sleep(2.0)  # idle period for the CPU measurement
    idle_cpu = proc.cpu_percent(None)
    rng = random.Random(1)
    for _ in range(messages):
        redis.publish(CHANNEL, repr(time.monotonic()))
        time.sleep(rng.uniform(0.002, 0.006))
    redis.publish(CHANNEL, "stop")
    deadline = time.monotonic() + 30
    item = None
    while item is None and time.monotonic() < deadline:
        item = redis.blpop([RESULTS], timeout=1)
    if item is None:
        raise TimeoutError("the listener never reported its results")
    lat = json.loads(item[1])
    if len(lat) != messages:
        raise RuntimeError(f"listener saw {len(lat)} of {messages} messages")
    return {
        "p50_ms": statistics.median(lat) * 1e3,
        "p99_ms": percentile(lat, 0.99) * 1e3,
        "max_ms": max(lat) * 1e3,
        "idle_cpu_percent": idle_cpu,
    }


def run_cell(client, code: str, timeout: float = 30.0) -> dict:
    """Execute ``code``; return the execute_reply content (raise if the cell failed)."""
    msg_id = client.execute(code, store_history=False)
    deadline = time.monotonic() + timeout
    while True:
        try:
            reply = client.get_shell_msg(timeout=max(deadline - time.monotonic(), 0.01))
        except queue.Empty:
            raise TimeoutError(f"no reply to {code!r}") from None
        if reply["parent_header"].get("msg_id") == msg_id:
            if reply["content"]["status"] != "ok":
                raise RuntimeError(f"cell failed: {reply['content']}")
            return reply["content"]


def in_kernel(kernels: Path, name: str, setup: str, redis, messages: int, env: dict) -> dict:
    manager = KernelManager(kernel_name=name,
                            kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)]))
    manager.start_kernel(env=env)
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=30)
        run_cell(client, setup + LISTENER)
        return measure(redis, messages, manager.provisioner.process.pid)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def in_process(redis, messages: int, env: dict) -> dict:
    proc = subprocess.Popen([sys.executable, "-c", LISTENER + "\n_listener.join()\n"], env=env)
    try:
        return measure(redis, messages, proc.pid)
    finally:
        proc.kill()
        proc.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=400)
    args = parser.parse_args(argv)

    from ipykernel.kernelspec import write_kernel_spec

    with tempfile.TemporaryDirectory() as tmp:
        server = PrivateRedis().start()
        try:
            kernels = Path(tmp) / "kernels"
            write_kernelspec(kernels / "beacon")
            write_kernel_spec(kernels / "python3")
            env = dict(os.environ, BEACON_REDIS_URL=server.url,
                       IPYTHONDIR=str(Path(tmp) / "ipython"))
            redis = get_redis(server.url)
            results = {"process": in_process(redis, args.messages, env)}
            results["beacon"] = in_kernel(kernels, "beacon", "", redis, args.messages, env)
            enable = ("from beacon_ipy.jupyter.eventloop import enable_integration\n"
                      "assert enable_integration() == 'stock+gevent'\n")
            results["stock+gevent"] = in_kernel(kernels, "python3", enable, redis,
                                                args.messages, env)
        finally:
            server.close()

    ref = results["process"]
    for name, r in results.items():
        print(f"{name:13s} p50 {r['p50_ms']:6.3f} ms ({r['p50_ms'] / ref['p50_ms']:4.2f}x)  "
              f"p99 {r['p99_ms']:6.3f} ms ({r['p99_ms'] / ref['p99_ms']:4.2f}x)  "
              f"max {r['max_ms']:6.2f} ms  idle CPU {r['idle_cpu_percent']:4.1f} %")
    print(json.dumps({"bench": "kernel_latency", "messages": args.messages,
                      "reference": "process", **{k: {m: round(v, 4) for m, v in r.items()}
                                                 for k, r in results.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
