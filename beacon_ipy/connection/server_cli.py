"""``beacon-ipy server start|status|stop``: manage the per-user embedded Redis server."""

from __future__ import annotations

import argparse
import json

from beacon_ipy.connection import embedded
from beacon_ipy.connection.address import ENV_VAR, configured_url, redacted
from beacon_ipy.connection.errors import RedisUnavailableError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["start", "status", "stop"])
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    if args.action == "start":
        info = embedded.ensure_server()
    elif args.action == "stop":
        was_running = embedded.stop()
        print("stopped" if was_running else "not running")
        return 0
    else:
        info = embedded.status()
    program, modules, protocol = embedded.describe_program(info)
    bound = embedded.memory_bound(info) if info.running else None
    tracker = embedded.tracker_pid(info.runtime_dir)
    if args.json:
        print(json.dumps({"running": info.running, "url": info.url, "pid": info.pid,
                          "runtime_dir": str(info.runtime_dir), "program": program,
                          "modules": modules, "blissdata_protocol": protocol,
                          "maxmemory": bound[0] if bound else None,
                          "memory_tracker_pid": tracker}))
    else:
        state = "running" if info.running else "not running"
        if info.running:
            store = (f"blissdata data store (protocol {protocol})" if protocol
                     else "not a blissdata data store: channels only")
        else:
            store = ("will carry scan data" if len(modules) == 2
                     else "will serve channels only (no RedisJSON/RediSearch)")
        print(f"embedded server: {state}\n  url: {info.url}\n  pid: {info.pid}\n"
              f"  runtime dir: {info.runtime_dir}\n  program: {program}\n"
              f"  modules: {', '.join(modules) or 'none'}\n  scan data: {store}")
        if bound is not None:
            limit = f"{bound[0] / 2**20:.0f} MiB ({bound[1]})" if bound[0] else "none"
            print(f"  maxmemory: {limit}\n  memory tracker: "
                  f"{f'pid {tracker}' if tracker else 'not running (starts on first scan use)'}")
        try:
            other = configured_url()
        except (RedisUnavailableError, ValueError) as exc:
            other = f"a server it cannot resolve now ({exc})"
        if other:
            print(f"note: this process is configured to use {redacted(other)} "
                  f"(--redis-url, {ENV_VAR} or BEACON_HOST), not the embedded server; "
                  f"'beacon-ipy where' says which and why")
    return 0 if info.running or args.action == "status" else 1
