"""The code base stays ruff-clean (the configuration is in pyproject.toml)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_clean():
    ruff = shutil.which("ruff") or pytest.fail("ruff is not installed (pip install -e '.[test]')")
    result = subprocess.run([ruff, "check", "beacon_ipy", "tests", "bench", "examples"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """Run import-linter on the beacon_ipy package under ``root`` with this project's
    contracts (pyproject.toml, [tool.importlinter])."""
    tool = (shutil.which("lint-imports", path=str(Path(sys.executable).parent))
            or shutil.which("lint-imports")
            or pytest.fail("lint-imports is not installed (pip install -e '.[test]')"))
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([tool, "--no-cache", str(ROOT / "pyproject.toml")], cwd=root,
                          env=env, capture_output=True, text=True)


def test_layer_contracts_kept():
    """jupyter | demo on top; saving | liveplot; scans | channels; connection at the
    bottom; the demo uses only the public scan API; IPython, ipywidgets and matplotlib
    only in the Jupyter layer. Checked by import-linter, indirect imports included."""
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize("module, line", [
    ("channels/upward.py", "from beacon_ipy.jupyter import registry\n"),
    ("scans/upward.py", "def f():\n    import beacon_ipy.saving.background\n"),
    ("liveplot/upward.py", "import IPython\n"),
    ("demo/upward.py", "from beacon_ipy.scans.internal import thing\n"),
])
def test_layer_contracts_catch_an_upward_import(tmp_path, module, line):
    """The contracts bite: one bad import (even inside a function) breaks them."""
    shutil.copytree(ROOT / "beacon_ipy", tmp_path / "beacon_ipy",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "beacon_ipy" / "scans" / "internal.py").write_text("thing = 1\n")
    (tmp_path / "beacon_ipy" / module).write_text(line)
    result = lint_imports(tmp_path)
    assert result.returncode != 0 and "BROKEN" in result.stdout, result.stdout[-4000:]


def test_channels_import_without_ipython():
    """Importing the lower layers does not import IPython (the kernel launcher relies on
    cheap imports)."""
    code = ("import sys, beacon_ipy.channels, beacon_ipy.connection, beacon_ipy.liveplot.frame;"
            "assert 'IPython' not in sys.modules, 'IPython imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
