"""The built wheel ships what `pip install beacon-ipy` users need (kernelspec, CLI)."""

import json
import subprocess
import sys
import zipfile
from pathlib import Path

from beacon_ipy.jupyter.kernelspec import kernel_dict

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_ships_the_beacon_kernelspec(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                    "-q", str(ROOT), "-w", str(tmp_path)], check=True, timeout=300)
    wheel = next(tmp_path.glob("beacon_ipy-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        spec_name = next(n for n in names if n.endswith("share/jupyter/kernels/beacon/kernel.json"))
        spec = json.loads(zf.read(spec_name))
        entry_points = zf.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert spec == kernel_dict("python"), "shipped kernel.json differs from install-kernel's"
    assert "beacon-ipy = beacon_ipy.cli:main" in entry_points
    shipped = {n.rsplit("/", 1)[-1] for n in names if "share/beacon-ipy/notebooks/" in n}
    assert {"quickstart.ipynb", "live_scans.ipynb", "cached_values.ipynb",
            "motor_process.py"} <= shipped, "beacon-ipy lab needs the notebooks outside a checkout"
