"""The live plot's peak/com/cen/fwhm are BLISS's: BLISS 2.4's own ``scan_math`` runs in the
real-BLISS virtualenv on the same curves, and every figure must match."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from beacon_ipy.liveplot.stats import CurveStats, cen, com, curve_stats, peak2, savgol_smooth

#: BLISS's scan_math runs in the full BLISS 2.4 virtualenv (tests/beacon_env.py), which has
#: the scipy it imports (savgol_filter), as a BLISS session has.


def curves() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Shapes BLISS's cen distinguishes, with and without noise, odd cases included."""
    rng = np.random.default_rng(7)
    x = np.linspace(-2.0, 3.0, 51)
    gauss = 100 * np.exp(-((x - 0.4) ** 2) / (2 * 0.3 ** 2)) + 5
    edge = 50 / (1 + np.exp(-(x - 0.7) / 0.1)) + 2
    out = {
        "gaussian": (x, gauss),
        "noisy gaussian": (x, gauss + rng.normal(0, 3, x.size)),
        "dip": (x, 200 - gauss),
        "step up": (x, edge),
        "noisy step up": (x, edge + rng.normal(0, 1.5, x.size)),
        "step down": (x, edge[::-1].copy()),
        "partial peak": (x, 100 * np.exp(-((x - 3.2) ** 2) / 2) + rng.normal(0, 0.5, x.size)),
        "one point above half": (x, np.where(np.arange(x.size) == 20, 10.0, 1.0)),
        "flat": (x, np.full(x.size, 3.0)),
        "with nans": (x, np.where(np.arange(x.size) % 7 == 3, np.nan, gauss)),
        "repeated x": (np.repeat(x[::3], 3)[:x.size], gauss),
        "descending x": (x[::-1].copy(), gauss),
        "negative": (x, gauss - 300),
        "single point": (np.array([1.5]), np.array([2.0])),
        "ten points": (x[::5].copy(), gauss[::5].copy()),
    }
    big = np.linspace(0, 10, 20001)
    out["20001 noisy points"] = (big, 1e4 * np.exp(-((big - 6.1) ** 2) / 0.5)
                                 + rng.normal(0, 50, big.size))
    return out


BLISS_SCRIPT = r"""
import json, sys, numpy
from bliss.scanning import scan_math
data = numpy.load(sys.argv[1])
out = {}
for key in data.files:
    if not key.endswith(" x"):
        continue
    name = key[:-2]
    x, y = data[name + " x"], data[name + " y"]
    p = scan_math.peak2(x, y)
    c = scan_math.cen(x, y)
    out[name] = [float(p[0]), float(p[1]), float(scan_math.com(x, y)), float(c[0]),
                 float(c[1])]
print(json.dumps(out))
"""


def test_statistics_equal_bliss_scan_math_run_in_the_bliss_env(full_bliss_python, tmp_path):
    data = curves()
    arrays = {}
    for name, (x, y) in data.items():
        arrays[name + " x"], arrays[name + " y"] = x, y
    path = tmp_path / "curves.npz"
    np.savez(path, **arrays)
    done = subprocess.run([full_bliss_python, "-c", BLISS_SCRIPT, str(path)],
                          capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    expected = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(expected) == set(data)
    for name, (x, y) in data.items():
        got = curve_stats(x, y, scan_nb=1, y_name=name, x_name="x")
        mine = [got.peak, got.peak_value, got.com, got.cen, got.fwhm]
        np.testing.assert_allclose(mine, expected[name], rtol=1e-9, atol=1e-12,
                                   equal_nan=True, err_msg=name)
    # the cases are not degenerate: most give finite, distinct numbers
    finite = [v for v in expected.values() if all(np.isfinite(v))]
    assert len(finite) >= len(expected) - 3
    assert expected["noisy step up"][3] == pytest.approx(0.7, abs=0.1)  # cen on the edge


def test_savgol_matches_scipy():
    signal = pytest.importorskip("scipy.signal")
    rng = np.random.default_rng(3)
    for n, window, order in [(9, 3, 2), (40, 11, 3), (101, 25, 3), (12, 5, 0)]:
        y = np.cumsum(rng.normal(size=n))
        np.testing.assert_allclose(savgol_smooth(y, window, order),
                                   signal.savgol_filter(y, window, order), rtol=1e-9,
                                   atol=1e-9)
    with pytest.raises(ValueError, match="odd window"):
        savgol_smooth(np.arange(5.0), 4, 2)


def test_known_values_and_degenerate_input():
    x = np.linspace(0, 10, 101)
    y = np.exp(-((x - 4.0) ** 2) / (2 * 0.5 ** 2))
    assert peak2(x, y) == (pytest.approx(4.0), pytest.approx(1.0))
    assert com(x, y) == pytest.approx(4.0, abs=1e-3)
    center, fwhm = cen(x, y)
    assert center == pytest.approx(4.0, abs=1e-3)
    assert fwhm == pytest.approx(2 * np.sqrt(2 * np.log(2)) * 0.5, rel=0.02)
    empty = curve_stats(np.array([]), np.array([]), scan_nb=3, y_name="d", x_name=None)
    assert isinstance(empty, CurveStats) and empty.points == 0
    assert all(np.isnan([empty.peak, empty.com, empty.cen, empty.fwhm]))
    all_nan = curve_stats(x, np.full(x.size, np.nan), scan_nb=3, y_name="d", x_name="sx")
    assert np.isnan(all_nan.peak) and "nan" in all_nan.text()
    with pytest.raises(TypeError, match="same size"):
        peak2(np.arange(3.0), np.arange(4.0))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-v"]))
