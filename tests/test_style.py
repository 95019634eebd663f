"""The code base stays ruff-clean (the configuration is in pyproject.toml)."""

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


def test_lower_layers_never_import_upper_ones():
    """connection -> channels; connection -> scans -> saving; jupyter on top."""
    forbidden = {
        "connection": ("beacon_ipy.channels", "beacon_ipy.scans", "beacon_ipy.saving",
                       "beacon_ipy.jupyter", "beacon_ipy.demo", "IPython", "ipywidgets"),
        "channels": ("beacon_ipy.scans", "beacon_ipy.saving", "beacon_ipy.jupyter",
                     "IPython", "ipywidgets", "matplotlib"),
        "scans": ("beacon_ipy.channels", "beacon_ipy.saving", "beacon_ipy.jupyter",
                  "IPython", "ipywidgets", "matplotlib"),
        "saving": ("beacon_ipy.jupyter", "IPython", "ipywidgets", "matplotlib"),
    }
    for layer, names in forbidden.items():
        package = ROOT / "beacon_ipy" / layer
        if not package.exists():
            continue
        for path in package.rglob("*.py"):
            text = path.read_text()
            for name in names:
                assert f"import {name}" not in text and f"from {name}" not in text, (
                    f"{path.relative_to(ROOT)} imports {name}: a lower layer must not "
                    f"import an upper one")
    # and importing the channels works without IPython being imported
    code = ("import sys, beacon_ipy.channels, beacon_ipy.connection;"
            "assert 'IPython' not in sys.modules, 'IPython imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
