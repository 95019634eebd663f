"""``beacon-ipy server start|status|stop``: manage the per-user embedded Redis server."""

from __future__ import annotations

import argparse
import json

from beacon_ipy.connection import embedded
from beacon_ipy.connection.address import ENV_VAR, configured_url, redacted


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
    other = configured_url()
    if args.json:
        print(json.dumps({"running": info.running, "url": info.url, "pid": info.pid,
                          "runtime_dir": str(info.runtime_dir)}))
    else:
        state = "running" if info.running else "not running"
        print(f"embedded server: {state}\n  url: {info.url}\n  pid: {info.pid}\n"
              f"  runtime dir: {info.runtime_dir}")
        if other:
            print(f"note: this process is configured to use {redacted(other)} "
                  f"(--redis-url or {ENV_VAR}), not the embedded server")
    return 0 if info.running or args.action == "status" else 1
