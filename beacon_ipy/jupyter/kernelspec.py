"""``beacon-ipy install-kernel``: install the ``beacon`` Jupyter kernelspec.

The kernelspec runs :mod:`beacon_ipy.jupyter.kernel` with the Python that ran this
command, so the kernel sees the same environment (and the same beacon-ipy). Importing
this module is cheap: the CLI imports it to build its parser.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

KERNEL_NAME = "beacon"
DISPLAY_NAME = "Python 3 (beacon, gevent)"


def kernel_dict(python: str | None = None) -> dict[str, Any]:
    """The content of ``kernel.json`` for the beacon kernel run by ``python``."""
    return {
        "argv": [python or sys.executable, "-m", "beacon_ipy.jupyter.kernel",
                 "-f", "{connection_file}"],
        "display_name": DISPLAY_NAME,
        "language": "python",
        # The debugger (debugpy) is not validated under gevent; keep it off.
        "metadata": {"debugger": False, "beacon_ipy": {"gevent": True}},
        "kernel_protocol_version": "5.5",
    }


def write_kernelspec(directory: str | Path, python: str | None = None) -> Path:
    """Write a complete kernelspec (kernel.json and ipykernel's logos) into ``directory``.

    ``directory`` is the kernel's own folder (``.../kernels/beacon``); it is created.
    Used by :func:`install` and by tests, which point ``JUPYTER_PATH`` at a temporary
    folder instead of installing into the user's.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    try:
        import ipykernel

        resources = Path(ipykernel.__file__).parent / "resources"
        for logo in resources.glob("logo-*"):
            shutil.copy(logo, directory / logo.name)
    except ImportError:  # pragma: no cover - ipykernel is a dependency
        pass
    (directory / "kernel.json").write_text(json.dumps(kernel_dict(python), indent=1) + "\n")
    return directory


def install(*, user: bool = True, prefix: str | None = None,
            python: str | None = None) -> str:
    """Install the kernelspec (for this user, or under ``prefix``); return where it went.

    Replaces an existing ``beacon`` kernelspec at the same place.
    """
    from jupyter_client.kernelspec import KernelSpecManager

    with tempfile.TemporaryDirectory() as tmp:
        source = write_kernelspec(Path(tmp) / KERNEL_NAME, python)
        return KernelSpecManager().install_kernel_spec(
            str(source), KERNEL_NAME, user=bool(user and prefix is None), prefix=prefix
        )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``beacon-ipy install-kernel``."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true",
                       help="install for the current user (the default)")
    where.add_argument("--sys-prefix", action="store_true",
                       help=f"install into this Python environment ({sys.prefix})")
    where.add_argument("--prefix", metavar="DIR",
                       help="install under DIR/share/jupyter/kernels")


def run(args: argparse.Namespace) -> int:
    """Install the kernelspec and say where, and how to use it."""
    prefix = sys.prefix if args.sys_prefix else args.prefix
    try:
        dest = install(user=prefix is None, prefix=prefix)
    except OSError as exc:
        print(f"beacon-ipy install-kernel: cannot write the kernelspec: {exc}. Try --user, "
              f"or --prefix DIR with a folder you can write to.", file=sys.stderr)
        return 1
    print(f"Installed kernel {KERNEL_NAME!r} ({DISPLAY_NAME}) in {dest}")
    print(f"Pick it in Jupyter (Kernel > Change Kernel), or: jupyter console --kernel {KERNEL_NAME}")
    return 0
