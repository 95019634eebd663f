"""The ``beacon-ipy`` command: one CLI, one subcommand per job.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int``; modules are imported only when their subcommand runs, so
``beacon-ipy server status`` never imports h5py or IPython.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from beacon_ipy.connection import RedisUnavailableError, set_default_url

# subcommand -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "server": ("beacon_ipy.connection.server_cli", "start, stop or show the embedded Redis server"),
    "where": ("beacon_ipy.connection.where_cli", "which Redis channels and scans use, and why"),
    "channel-demo": ("beacon_ipy.channels.demo", "two processes sharing a channel (a quick look)"),
    "demo": ("beacon_ipy.demo.cli", "run simulated scans into a session"),
    "save": ("beacon_ipy.saving.cli", "save a session's scans to NeXus HDF5 as they arrive"),
    "install-kernel": ("beacon_ipy.jupyter.kernelspec", "install the 'beacon' Jupyter kernel"),
    "lab": ("beacon_ipy.jupyter.lab_cli", "JupyterLab on the demo notebooks, beacon kernel ready"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="beacon-ipy",
        description="BLISS-style Beacon channels and live scan data over Redis.",
    )
    parser.add_argument(
        "--redis-url",
        help="Redis server to use (overrides BEACON_REDIS_URL; default: the per-user "
        "embedded server)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        sp.set_defaults(_module=module_name)
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            sp.set_defaults(_missing=True)
            continue
        module.add_arguments(sp)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "_missing", False):
        parser.error(f"'{args.command}' is not available in this installation")
    if args.redis_url:
        set_default_url(args.redis_url)
    module = importlib.import_module(args._module)
    try:
        return int(module.run(args) or 0)
    except RedisUnavailableError as exc:
        print(f"beacon-ipy: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
