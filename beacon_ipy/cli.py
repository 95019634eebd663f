"""The ``beacon-ipy`` command: one CLI, one subcommand per job.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int``; modules are imported only when their subcommand runs, so
``beacon-ipy server status`` never imports h5py or IPython.

Configuration errors (an unusable ``BEACON_REDIS_URL`` or ``--redis-url``, Redis not
reachable, a bad value) end every subcommand with one line on stderr and exit status 2,
never a traceback (``BEACON_IPY_DEBUG=1`` shows the traceback).
"""

from __future__ import annotations

import argparse
import importlib
import os
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
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # only `lab` passes options it does not know on (to JupyterLab)
        if not getattr(args, "passes_unknown_options", False):
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
        args.jupyter_args = [*unknown, *args.jupyter_args]
    if getattr(args, "_missing", False):
        parser.error(f"'{args.command}' is not available in this installation")
    try:
        if args.redis_url:
            set_default_url(args.redis_url)
        module = importlib.import_module(args._module)
        return int(module.run(args) or 0)
    except (RedisUnavailableError, ValueError) as exc:
        if os.environ.get("BEACON_IPY_DEBUG"):
            raise
        print(f"beacon-ipy {args.command}: {one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def one_line(exc: BaseException) -> str:
    """The exception's message on one line (what a CLI prints instead of a traceback)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text


if __name__ == "__main__":
    sys.exit(main())
