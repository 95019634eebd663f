"""``beacon-ipy lab`` prepares notebooks, kernel and Redis (``--dry-run``; the real launch
is exercised by tests/test_browser.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from notebook_helpers import NOTEBOOKS, NOTEBOOKS_DIR


def lab(*args: str, cache: Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, XDG_CACHE_HOME=str(cache))
    return subprocess.run([sys.executable, "-m", "beacon_ipy.cli", "lab", *args], env=env,
                          cwd=cwd, capture_output=True, text=True, timeout=120)


def test_dry_run_copies_notebooks_once_and_writes_a_private_kernelspec(tmp_path):
    work, cache = tmp_path / "work", tmp_path / "cache"
    done = lab("--dir", str(work), "--dry-run", "--port", "8765", "--", "--ServerApp.x=1",
               cache=cache)
    assert done.returncode == 0, done.stderr
    for name in NOTEBOOKS:
        assert (work / f"{name}.ipynb").read_bytes() == (
            NOTEBOOKS_DIR / f"{name}.ipynb").read_bytes()
    assert (work / "motor_process.py").is_file()
    assert f"redis:     {os.environ['BEACON_REDIS_URL']}" in done.stdout
    command = done.stdout.split("starting:")[1]
    for part in (f"--ServerApp.root_dir={work}", "--MappingKernelManager.default_kernel_name=beacon",
                 "--ServerApp.port=8765", "--ServerApp.x=1", "live_scans.ipynb"):
        assert part in command, command
    (spec_path,) = cache.glob("beacon-ipy/lab-*/kernels/beacon/kernel.json")
    spec = json.loads(spec_path.read_text())
    assert spec["argv"][:3] == [sys.executable, "-m", "beacon_ipy.jupyter.kernel"]

    # the user's edits are kept on the next launch
    (work / "quickstart.ipynb").write_text("{}")
    again = lab("--dir", str(work), "--dry-run", cache=cache)
    assert again.returncode == 0, again.stderr
    assert (work / "quickstart.ipynb").read_text() == "{}"
    assert "kept your copies of" in again.stdout and "quickstart.ipynb" in again.stdout


def test_clear_errors(tmp_path):
    cache = tmp_path / "cache"
    empty = tmp_path / "empty"
    empty.mkdir()
    done = lab("--dir", str(tmp_path / "w"), "--source", str(empty), "--dry-run", cache=cache)
    assert done.returncode == 2
    assert "cannot find the demo notebooks" in done.stderr and "--source DIR" in done.stderr
    done = lab("--dir", str(tmp_path / "w"), "--notebook", "nope.ipynb", "--dry-run",
               cache=cache)
    assert done.returncode == 2
    assert "no notebook 'nope.ipynb'" in done.stderr and "live_scans.ipynb" in done.stderr


def test_jupyter_options_pass_through_and_root_gets_allow_root(tmp_path):
    """`beacon-ipy lab --allow-root --ServerApp.ip=...` is accepted (issue 12, §2); as
    root, --allow-root is added with a one-line notice (Jupyter refuses root otherwise)."""
    work, cache = tmp_path / "work", tmp_path / "cache"
    done = lab("--dir", str(work), "--dry-run", "--allow-root", "--ServerApp.ip=0.0.0.0",
               "--port", "8766", cache=cache)
    assert done.returncode == 0, done.stderr
    command = done.stdout.split("starting:")[1].split()
    assert command.count("--allow-root") == 1, command
    assert "--ServerApp.ip=0.0.0.0" in command and "--ServerApp.port=8766" in command
    assert "adding --allow-root" not in done.stdout  # the user gave it
    done = lab("--dir", str(work), "--dry-run", cache=cache)
    assert done.returncode == 0, done.stderr
    command = done.stdout.split("starting:")[1].split()
    if os.geteuid() == 0:
        assert command.count("--allow-root") == 1, command
        notice = [line for line in done.stdout.splitlines() if "--allow-root" in line
                  and not line.startswith("starting:")]
        assert len(notice) == 1 and "root" in notice[0], done.stdout
    else:
        assert "--allow-root" not in command, command


def test_the_printed_url_opens_the_demo_notebook(tmp_path):
    """JupyterLab prints its default URL: it is the notebook, not the Launcher (§2)."""
    work, cache = tmp_path / "work", tmp_path / "cache"
    done = lab("--dir", str(work), "--dry-run", cache=cache)
    assert "--LabApp.default_url=/lab/tree/live_scans.ipynb" in done.stdout.split("starting:")[1]
    done = lab("--dir", str(work), "--dry-run", "--notebook", "quickstart.ipynb", cache=cache)
    assert "--LabApp.default_url=/lab/tree/quickstart.ipynb" in done.stdout


def test_subshell_requests_are_untracked_so_a_running_kernel_shows_busy(tmp_path):
    """JupyterLab ignores the busy/idle of the requests in untracked_message_types; the
    subshell requests of its widget manager are added to jupyter_server's defaults (else
    a kernel running a cell can be shown "Idle"; checked in a browser by
    tests/test_browser.py::test_cache_editor_and_event_log_in_a_real_browser)."""
    done = lab("--dir", str(tmp_path / "work"), "--dry-run", cache=tmp_path / "cache")
    assert done.returncode == 0, done.stderr
    flag = "--MappingKernelManager.untracked_message_types="
    (arg,) = [a for a in done.stdout.split("starting:")[1].split() if a.startswith(flag)]
    types = json.loads(arg[len(flag):])
    for kind in ("kernel_info_request", "debug_request", "create_subshell_request",
                 "delete_subshell_request", "list_subshell_request"):
        assert kind in types, types
