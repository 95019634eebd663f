"""Channel widgets in the beacon kernel: update latency, and responsiveness under a 1 kHz channel.

One private redis-server, one beacon kernel (``%load_ext beacon_ipy``) with a channel
bound to a widget (``bind``, default 50 ms throttle), and a separate publisher process
whose channel values are its ``time.monotonic()`` (system-wide on Linux, so every process
can tell a value's age). This process plays the front end: a thread reads the kernel's
iopub socket and timestamps every widget ``comm_msg``.

Measured:

1. **publish -> widget update latency, kernel idle**: the publisher sets the channel
   every 60-90 ms (random, above the throttle interval, so every change is sent at once);
   latency = arrival of the comm update here - the value. Reference: the same messages'
   publish -> channel callback latency inside the kernel (what the widget adds on top).
2. **kernel response to a trivial cell** (``pass``: execute_request -> execute_reply),
   idle (reference), then while the publisher sets the bound channel at 1 kHz; plus the
   comm updates per second the front end receives meanwhile and how old the value shown
   is when it arrives.

Run: python bench/widgets.py [--rounds 150] [--seconds 5]
Prints a table with ratios to the references, then a final JSON line.
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
import threading
import time
from pathlib import Path

from kernel_latency import run_cell  # bench/ is on sys.path when run as a script

HERE = os.path.abspath(__file__)
NAME = "bench:widgets:value"


def _stats_ms(samples: list[float]) -> dict:
    ms = sorted(s * 1e3 for s in samples)
    if not ms:
        return {"p50_ms": None, "p99_ms": None, "n": 0}
    return {"p50_ms": round(statistics.median(ms), 3),
            "p99_ms": round(ms[min(len(ms) - 1, int(len(ms) * 0.99))], 3), "n": len(ms)}


# ------------------------------------------------------------------- publisher process
def role_publisher(url: str) -> None:
    """Set NAME to time.monotonic(): 'spaced N' (60-90 ms apart) or 'flood SECONDS' (1 kHz)."""
    os.environ["BEACON_REDIS_URL"] = url
    import gevent
    from gevent.fileobject import FileObjectPosix

    from beacon_ipy.channels import Channel, close_all

    channel = Channel(NAME)
    channel.value  # noqa: B018 - wait for the query to settle before saying ready
    stdin = FileObjectPosix(sys.stdin.fileno(), "rb")

    def say(**msg) -> None:
        sys.stdout.write(json.dumps(msg) + "\n")
        sys.stdout.flush()

    say(event="ready")
    rng = random.Random(1)
    for line in stdin:
        cmd, arg = json.loads(line)
        if cmd == "spaced":
            for _ in range(int(arg)):
                channel.value = time.monotonic()
                channel.bus.flush()
                gevent.sleep(rng.uniform(0.06, 0.09))
            say(event="done")
        elif cmd == "flood":
            sets, start = 0, time.monotonic()
            next_tick = start
            while time.monotonic() - start < float(arg):
                channel.value = time.monotonic()
                sets += 1
                next_tick += 0.001
                gevent.sleep(max(0.0, next_tick - time.monotonic()))
            channel.bus.flush()
            say(event="done", sets=sets, rate_hz=sets / (time.monotonic() - start))
        else:
            break
    close_all()


# ------------------------------------------------------------------------- the driver
class IopubReader(threading.Thread):
    """Reads the kernel's iopub socket; records (arrival, value) of one comm's updates."""

    def __init__(self, client):
        super().__init__(daemon=True)
        self.client = client
        self.comm_id: str | None = None
        self.updates: list[tuple[float, float]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                msg = self.client.get_iopub_msg(timeout=0.1)
            except queue.Empty:
                continue
            now = time.monotonic()
            if msg["msg_type"] != "comm_msg" or msg["content"]["comm_id"] != self.comm_id:
                continue
            data = msg["content"]["data"]
            if data.get("method") == "update" and "value" in data.get("state", {}):
                self.updates.append((now, float(data["state"]["value"])))


def eval_in(client, expr: str):
    """Value of a JSON-able expression, through user_expressions."""
    content = run_cell_expr(client, expr)
    return json.loads(content)


def run_cell_expr(client, expr: str) -> str:
    msg_id = client.execute("", store_history=False,
                            user_expressions={"x": f"__import__('json').dumps({expr})"})
    deadline = time.monotonic() + 30
    while True:
        reply = client.get_shell_msg(timeout=max(deadline - time.monotonic(), 0.01))
        if reply["parent_header"].get("msg_id") == msg_id:
            result = reply["content"]["user_expressions"]["x"]
            if result["status"] != "ok":
                raise RuntimeError(f"{expr!r} failed: {result}")
            return eval(result["data"]["text/plain"])  # a str repr


def cell_times(client, seconds: float) -> list[float]:
    """Round trips of trivial cells run back to back for ``seconds``."""
    times = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.perf_counter()
        run_cell(client, "pass")
        times.append(time.perf_counter() - t0)
    return times


SETUP = f"""
%load_ext beacon_ipy
import time
from beacon_ipy.channels import Channel
from beacon_ipy.widgets import bind
channel = Channel({NAME!r}, default_value=0.0)
callback_latency = []
def on_value(value):
    if value:  # not the default 0.0
        callback_latency.append(time.monotonic() - value)
channel.register_callback(on_value)  # before the binding's: a clean reference
binding = bind(channel)
display(binding)
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=150,
                        help="spaced updates for the latency measurement")
    parser.add_argument("--seconds", type=float, default=5.0,
                        help="duration of each responsiveness measurement")
    parser.add_argument("--role", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "publisher":
        role_publisher(args.url)
        return 0

    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    from beacon_ipy.connection.private import PrivateRedis
    from beacon_ipy.jupyter.kernelspec import write_kernelspec

    with tempfile.TemporaryDirectory() as tmp:
        server = PrivateRedis().start()
        kernels = Path(tmp) / "kernels"
        write_kernelspec(kernels / "beacon")
        env = dict(os.environ, BEACON_REDIS_URL=server.url, IPYTHONDIR=str(Path(tmp) / "ipy"),
                   PYTHONUNBUFFERED="1")
        manager = KernelManager(kernel_name="beacon",
                                kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)]))
        manager.start_kernel(env=env)
        client = manager.client()
        client.start_channels()
        publisher = None
        try:
            client.wait_for_ready(timeout=30)
            run_cell(client, SETUP, timeout=60)
            reader = IopubReader(client)
            reader.comm_id = eval_in(client, "binding.widget.model_id")
            reader.start()
            publisher = subprocess.Popen(
                [sys.executable, HERE, "--role", "publisher", "--url", server.url],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)

            def command(cmd: str, arg) -> dict:
                publisher.stdin.write(json.dumps([cmd, arg]) + "\n")
                publisher.stdin.flush()
                return json.loads(publisher.stdout.readline())

            assert json.loads(publisher.stdout.readline())["event"] == "ready"

            # 1. latency, kernel idle (nothing but the publisher talks to the kernel)
            command("spaced", args.rounds)
            deadline = time.monotonic() + 10
            while len(reader.updates) < args.rounds and time.monotonic() < deadline:
                time.sleep(0.01)  # waiting for the reader thread, bounded
            widget_lat = [arrival - value for arrival, value in reader.updates]
            callback_lat = eval_in(client, "callback_latency")
            run_cell(client, "channel.unregister_callback(on_value)")
            latency = {"widget": _stats_ms(widget_lat), "callback": _stats_ms(callback_lat)}

            # 2. responsiveness: idle, then under a 1 kHz channel
            idle_cells = cell_times(client, args.seconds)
            reader.updates.clear()
            flood = {}
            flood_thread = threading.Thread(
                target=lambda: flood.update(command("flood", args.seconds)))
            flood_thread.start()
            busy_cells = cell_times(client, args.seconds)
            flood_thread.join(args.seconds + 30)
            updates = list(reader.updates)
            span = (updates[-1][0] - updates[0][0]) if len(updates) > 1 else float("nan")
            staleness = [arrival - value for arrival, value in updates]
            reader.stop.set()
            publisher.stdin.close()  # the publisher exits at end of input
            publisher.wait(10)
        finally:
            if publisher is not None and publisher.poll() is None:
                publisher.kill()
            client.stop_channels()
            manager.shutdown_kernel(now=True)
            server.close()

    idle = _stats_ms(idle_cells)
    busy = _stats_ms(busy_cells)
    out = {
        "bench": "widgets",
        "latency": latency,
        "cell_idle": idle,
        "cell_1khz": busy,
        "publisher_rate_hz": round(flood.get("rate_hz", 0.0), 1),
        "comm_updates_per_s": round(len(updates) / span, 1) if span == span else None,
        "shown_value_age": _stats_ms(staleness),
        "ratios": {
            "widget_vs_callback_latency_p50": round(
                latency["widget"]["p50_ms"] / latency["callback"]["p50_ms"], 2),
            "cell_1khz_vs_idle_p50": round(busy["p50_ms"] / idle["p50_ms"], 2),
            "cell_1khz_vs_idle_p99": round(busy["p99_ms"] / idle["p99_ms"], 2),
        },
    }
    w, c = latency["widget"], latency["callback"]
    print(f"{'measure':44} {'p50 ms':>9} {'p99 ms':>9}")
    print(f"{'publish -> widget comm update (idle kernel)':44} {w['p50_ms']:>9} {w['p99_ms']:>9}")
    print(f"{'publish -> channel callback (reference)':44} {c['p50_ms']:>9} {c['p99_ms']:>9}")
    print(f"{'trivial cell, idle kernel (reference)':44} {idle['p50_ms']:>9} {idle['p99_ms']:>9}")
    print(f"{'trivial cell, 1 kHz channel bound to widget':44} {busy['p50_ms']:>9} "
          f"{busy['p99_ms']:>9}")
    age = out["shown_value_age"]
    print(f"{'age of the value shown, under 1 kHz':44} {age['p50_ms']:>9} {age['p99_ms']:>9}")
    print(f"publisher {out['publisher_rate_hz']} sets/s -> {out['comm_updates_per_s']} widget "
          f"updates/s to the front end")
    print(f"ratios: {out['ratios']}")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
