"""A cached virtualenv with BLISS's NeXus writer (``blisswriter==3.0.0``), for interop tests.

``blisswriter run URL`` needs only blissdata and Redis (NOTES §5). It lives in its own env,
built once per machine next to the BLISS envs (``tests/bliss_env.py``'s cache root, file
lock and atomic rename); ``BEACON_IPY_BLISSWRITER_PYTHON`` names an existing interpreter
instead. ``python tests/blisswriter_env.py`` builds it and prints its interpreter.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from pathlib import Path

from bliss_env import (
    BlissEnvError,
    IndexUnreachable,
    _python_runs,
    _run,
    _tail,
    cache_root,
    ensure_built,
    env_python,
    probe_index,
)

REQUIREMENTS = ["blisswriter==3.0.0"]
IMPORT_CHECK = "import blisswriter.cli, blisswriter.scan_writer"
ENV_PYTHON = "BEACON_IPY_BLISSWRITER_PYTHON"


def env_dir() -> Path:
    key = hashlib.sha256(repr((REQUIREMENTS, IMPORT_CHECK, sys.version_info[:2])).encode())
    return cache_root() / f"blisswriter-3.0.0-py{sys.version_info[0]}.{sys.version_info[1]}-" \
                          f"{key.hexdigest()[:12]}"


def _build(tmp: Path) -> dict:
    t0 = time.monotonic()
    unreachable = probe_index(sys.executable)
    if unreachable:
        raise IndexUnreachable(unreachable)
    done = _run([sys.executable, "-m", "venv", str(tmp)], "python -m venv")
    if done.returncode:
        raise BlissEnvError(f"python -m venv failed:\n{_tail(done.stderr)}")
    python = str(env_python(tmp))
    done = _run([python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
                 *REQUIREMENTS], "pip install blisswriter")
    if done.returncode:
        raise BlissEnvError(f"pip install {REQUIREMENTS} failed:\n"
                            f"{_tail(done.stdout + done.stderr)}")
    done = _run([python, "-c", IMPORT_CHECK], "blisswriter import check", timeout=120)
    if done.returncode:
        raise BlissEnvError(f"blisswriter installed but does not import:\n{_tail(done.stderr)}")
    return {"requirements": REQUIREMENTS, "build_seconds": round(time.monotonic() - t0, 1)}


def blisswriter_python() -> str:
    """The interpreter of the blisswriter env (built on first use); skips the calling test
    if the package index is unreachable."""
    configured = os.environ.get(ENV_PYTHON)
    if configured:
        return configured
    try:
        env = ensure_built(env_dir(), _build, _python_runs)
    except IndexUnreachable as exc:
        import pytest

        pytest.skip(f"cannot build the blisswriter env: {exc}")
    return str(env_python(env))


if __name__ == "__main__":
    print(blisswriter_python())
