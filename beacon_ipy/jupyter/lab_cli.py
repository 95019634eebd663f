"""``beacon-ipy lab``: JupyterLab on the demo notebooks, with the beacon kernel, in one command.

What a newcomer runs after ``pip install ".[lab]"``:

1. checks that JupyterLab is installed (or says what to install) and that Redis answers
   (starting the embedded per-user server if nothing else is configured), so that a
   missing piece is reported here rather than as a dead cell in the browser;
2. copies the demo notebooks (``quickstart``, ``live_scans``, ``cached_values`` and the
   helper script they use) into a working folder, ``~/beacon-ipy-notebooks`` by default,
   so that running them never edits the repository's copies; files already there are
   kept (delete them to get fresh ones);
3. writes the ``beacon`` kernelspec for *this* Python into a private folder put first on
   ``JUPYTER_PATH`` of the server, so the notebooks run on this installation whatever
   other ``beacon`` kernels are installed, and nothing is installed into the user's
   Jupyter folders;
4. replaces itself with ``python -m jupyterlab`` opening ``live_scans.ipynb``: the URL
   it prints opens that notebook directly (``--LabApp.default_url``), not the Launcher.

Options it does not know go to JupyterLab unchanged (``beacon-ipy lab --allow-root
--ServerApp.ip=0.0.0.0``; everything after ``--`` too). Run as root (containers,
Binder-like images), it adds ``--allow-root`` itself and says so in one line: Jupyter
would otherwise refuse to start.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path

import beacon_ipy

#: The demo notebooks and the files they need, in the order a newcomer reads them.
NOTEBOOKS = ("live_scans.ipynb", "quickstart.ipynb", "cached_values.ipynb")
HELPERS = ("motor_process.py",)
DEFAULT_DIR = "~/beacon-ipy-notebooks"
DEFAULT_NOTEBOOK = "live_scans.ipynb"


def notebook_sources() -> list[Path]:
    """Where the demo notebooks may be, most specific first: ``./notebooks`` (a checkout),
    the checkout this package was imported from (editable install), then the copy
    installed with the package (``<prefix>/share/beacon-ipy/notebooks``)."""
    package_root = Path(beacon_ipy.__file__).resolve().parent.parent
    return [Path.cwd() / "notebooks", package_root / "notebooks",
            Path(sys.prefix) / "share" / "beacon-ipy" / "notebooks"]


def find_notebooks(source: str | Path | None = None) -> Path:
    """The folder holding the demo notebooks; raises FileNotFoundError saying where it looked."""
    candidates = [Path(source).expanduser()] if source else notebook_sources()
    for folder in candidates:
        if (folder / DEFAULT_NOTEBOOK).is_file():
            return folder.resolve()
    looked = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(
        f"cannot find the demo notebooks ({DEFAULT_NOTEBOOK}); looked in: {looked}. Run this "
        f"command from a beacon-ipy checkout, or give the folder with --source DIR.")


def copy_notebooks(source: Path, target: Path) -> tuple[list[str], list[str]]:
    """Copy the demo files missing from ``target``; return (copied, kept) file names."""
    target.mkdir(parents=True, exist_ok=True)
    copied, kept = [], []
    if source.resolve() == target.resolve():
        return copied, [n for n in (*NOTEBOOKS, *HELPERS) if (target / n).exists()]
    for name in (*NOTEBOOKS, *HELPERS):
        src, dst = source / name, target / name
        if not src.is_file():
            continue
        if dst.exists():
            kept.append(name)
        else:
            shutil.copy2(src, dst)
            copied.append(name)
    return copied, kept


def kernel_data_dir(python: str | None = None) -> Path:
    """A private Jupyter data folder holding the beacon kernelspec for ``python``.

    One folder per interpreter (so two virtualenvs never overwrite each other's), under
    the user's cache directory; it goes first on the server's ``JUPYTER_PATH``.
    """
    import platformdirs

    python = python or sys.executable
    digest = hashlib.sha1(python.encode()).hexdigest()[:12]
    return platformdirs.user_cache_path("beacon-ipy", appauthor=False) / f"lab-{digest}"


def write_private_kernelspec(python: str | None = None) -> Path:
    """Write the beacon kernelspec for ``python`` into :func:`kernel_data_dir`; return
    the data folder (what ``JUPYTER_PATH`` must contain)."""
    from beacon_ipy.jupyter.kernelspec import KERNEL_NAME, write_kernelspec

    data_dir = kernel_data_dir(python)
    write_kernelspec(data_dir / "kernels" / KERNEL_NAME, python)
    return data_dir


#: The control-channel requests of kernel subshells (ipykernel >= 7), and their replies.
SUBSHELL_MESSAGE_TYPES = ("create_subshell_request", "create_subshell_reply",
                          "delete_subshell_request", "delete_subshell_reply",
                          "list_subshell_request", "list_subshell_reply")


def untracked_message_types() -> list[str] | None:
    """jupyter_server's ``untracked_message_types`` plus :data:`SUBSHELL_MESSAGE_TYPES`
    (None if jupyter_server is not importable).

    Why: JupyterLab ignores the busy/idle status of the requests in this list; the
    default list predates subshells, so when the widget manager creates its subshell
    (the first widget shown) during a cell, JupyterLab shows the kernel "Idle" while the
    cell still runs, and a stuck kernel looks idle (docs/jupyter.md). With the subshell
    requests listed the status follows the main shell (they are not user activity
    either, which is what the list is also for: kernel culling)."""
    try:
        from jupyter_server.services.kernels.kernelmanager import MappingKernelManager
    except ImportError:
        return None
    default = list(MappingKernelManager.class_traits()["untracked_message_types"].default())
    return default + [t for t in SUBSHELL_MESSAGE_TYPES if t not in default]


def lab_command(directory: Path, notebook: str, *, port: int | None, no_browser: bool,
                extra: list[str]) -> list[str]:
    """The JupyterLab command line (run with ``directory`` as the working directory)."""
    from beacon_ipy.jupyter.kernelspec import KERNEL_NAME

    cmd = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={directory}",
           f"--MappingKernelManager.default_kernel_name={KERNEL_NAME}",
           f"--LabApp.default_url=/lab/tree/{notebook}"]
    untracked = untracked_message_types()
    if untracked is not None:  # a later --MappingKernelManager.untracked_message_types wins
        cmd.append("--MappingKernelManager.untracked_message_types="
                   + json.dumps(untracked, separators=(",", ":")))
    if port is not None:
        cmd.append(f"--ServerApp.port={port}")
    if no_browser:
        cmd.append("--no-browser")
    cmd += [*extra, notebook]
    return cmd


def running_as_root() -> bool:
    """True for the root user (Jupyter refuses to start as root without --allow-root)."""
    return hasattr(os, "geteuid") and os.geteuid() == 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``beacon-ipy lab``."""
    parser.add_argument("--dir", default=DEFAULT_DIR,
                        help=f"working folder for the notebooks (default: {DEFAULT_DIR})")
    parser.add_argument("--source", metavar="DIR",
                        help="where to copy the demo notebooks from (default: ./notebooks of "
                             "a checkout, or the copy installed with the package)")
    parser.add_argument("--notebook", default=DEFAULT_NOTEBOOK,
                        help=f"notebook to open (default: {DEFAULT_NOTEBOOK})")
    parser.add_argument("--port", type=int, help="port of the server (default: 8888 or next free)")
    parser.add_argument("--no-browser", action="store_true", help="do not open a browser")
    parser.add_argument("--dry-run", action="store_true",
                        help="prepare everything, print the command, do not start JupyterLab")
    parser.add_argument("jupyter_args", nargs=argparse.REMAINDER,
                        help="options for JupyterLab (e.g. --allow-root, "
                             "--ServerApp.ip=0.0.0.0), passed as they are; also after --")
    parser.set_defaults(passes_unknown_options=True)


def run(args: argparse.Namespace) -> int:
    """Prepare the notebooks, kernel and Redis, then become JupyterLab."""
    from beacon_ipy.connection import check_reachable, configured_url, redacted

    if importlib.util.find_spec("jupyterlab") is None:
        print("beacon-ipy lab: JupyterLab is not installed in this Python "
              f"({sys.executable}). Install it with:  pip install 'beacon-ipy[lab]'  "
              "(or: pip install jupyterlab ipympl)", file=sys.stderr)
        return 2
    try:
        source = find_notebooks(args.source)
    except FileNotFoundError as exc:
        print(f"beacon-ipy lab: {exc}", file=sys.stderr)
        return 2
    directory = Path(args.dir).expanduser().resolve()
    try:
        copied, kept = copy_notebooks(source, directory)
    except OSError as exc:
        print(f"beacon-ipy lab: cannot prepare {directory}: {exc}. Choose another folder "
              f"with --dir DIR.", file=sys.stderr)
        return 2
    if not (directory / args.notebook).is_file():
        print(f"beacon-ipy lab: no notebook {args.notebook!r} in {directory}; choose one of "
              f"{', '.join(NOTEBOOKS)}", file=sys.stderr)
        return 2
    url = check_reachable(configured_url())  # RedisUnavailableError: cli.main reports it
    data_dir = write_private_kernelspec()

    env = dict(os.environ)
    env["JUPYTER_PATH"] = os.pathsep.join(
        [str(data_dir), *[p for p in env.get("JUPYTER_PATH", "").split(os.pathsep) if p]])
    explicit = configured_url()
    if explicit is not None:  # --redis-url: the kernels must use it too
        env["BEACON_REDIS_URL"] = explicit
    extra = [a for a in args.jupyter_args if a != "--"]
    if running_as_root() and "--allow-root" not in extra:
        extra.append("--allow-root")
        print("beacon-ipy lab: running as root (a container?): adding --allow-root for "
              "JupyterLab")
    cmd = lab_command(directory, args.notebook, port=args.port, no_browser=args.no_browser,
                      extra=extra)

    print(f"notebooks: {directory}"
          + (f" (copied {', '.join(copied)} from {source})" if copied else "")
          + (f"; kept your copies of {', '.join(kept)}" if kept else ""))
    print(f"kernel:    beacon (gevent) running {sys.executable}")
    print(f"redis:     {redacted(url)}"
          + ("" if explicit else " (embedded per-user server; set BEACON_REDIS_URL for another)"))
    print(f"starting:  {' '.join(cmd[1:])}", flush=True)
    if args.dry_run:
        return 0
    os.chdir(directory)
    os.execve(sys.executable, cmd, env)
    return 0  # pragma: no cover - execve does not return
