"""Peak, com, cen and fwhm of a plotted curve, as BLISS computes them.

BLISS users align motors with ``peak()``, ``com()``, ``cen()`` and ``fwhm()`` after a
scan (``bliss.scanning.scan_tools``), which call ``bliss.scanning.scan_math``:

* ``peak``: x of the maximum of y (``scan_math.peak``);
* ``com``: "visual" centre of mass: x made unique (sorted), y shifted to a zero minimum,
  ``sum(x * y / sum(y))`` (``scan_math.com``);
* ``cen`` and ``fwhm``: centre and full width at half maximum from the half-maximum
  crossings, refined by the local gradient, with BLISS's special cases for reversed
  peaks, edges (Gaussian-edge width from the 12 %/88 % levels) and partial peaks
  (``scan_math.cen``).

The functions below follow ``scan_math`` of BLISS 2.4 step by step, so that the live
plot's numbers are the ones BLISS prints on the same data (tests/test_liveplot_stats.py
runs BLISS's own module in its virtualenv and compares). The one dependency BLISS has
that beacon-ipy does not, scipy's ``savgol_filter`` (noise estimate of edges), is
reimplemented here with numpy (same least-squares coefficients, same ``"interp"`` edges).
A computation that fails (no finite point, a floating-point error) gives NaN, as BLISS.
"""

from __future__ import annotations

import logging
import math
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CurveStats:
    """The statistics of one plotted curve: positions are values of the x axis (the
    motor position they point at; the point index when ``x`` is None)."""

    scan_nb: int
    y: str  # the curve's channel (normalised by ``monitor`` if set)
    x: str | None  # the x axis channel (None: point index)
    points: int
    peak: float  # x of the maximum
    peak_value: float  # the maximum
    com: float
    cen: float
    fwhm: float
    monitor: str | None = None
    ended: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def text(self, digits: int = 4) -> str:
        """One line for the plot: ``peak 1.25 (830)  com 1.24  cen 1.25  fwhm 0.31``."""
        def f(v: float) -> str:
            return "nan" if not math.isfinite(v) else f"{v:.{digits}g}"

        return (f"peak {f(self.peak)} ({f(self.peak_value)})  com {f(self.com)}  "
                f"cen {f(self.cen)}  fwhm {f(self.fwhm)}")


def curve_stats(x: np.ndarray, y: np.ndarray, *, scan_nb: int, y_name: str,
                x_name: str | None, monitor: str | None = None,
                ended: bool = False) -> CurveStats:
    """All statistics of ``y(x)`` (NaN where BLISS would give NaN)."""
    x = np.asarray(x, dtype=float).reshape(-1)
    y = np.asarray(y, dtype=float).reshape(-1)
    n = min(len(x), len(y))
    x, y = x[:n], y[:n]
    peak_pos, peak_val = peak2(x, y)
    center, width = cen(x, y)
    return CurveStats(scan_nb, y_name, x_name, int(np.isfinite(x + y).sum()),
                      float(peak_pos), float(peak_val), float(com(x, y)), float(center),
                      float(width), monitor, ended)


# -- scan_math, BLISS 2.4 -------------------------------------------------------------

def peak2(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(x, y) of the maximum of y."""
    if not _check_arrays(x, y):
        return math.nan, math.nan
    with _capture_exceptions():
        x, y = _extract_finite(x, y)
        index = np.argmax(y)
        return float(x[index]), float(y[index])
    return math.nan, math.nan


def peak(x: np.ndarray, y: np.ndarray) -> float:
    """x of the maximum of y."""
    return peak2(x, y)[0]


def com(x: np.ndarray, y: np.ndarray, visual: bool = True) -> float:
    """Centre of mass ("visual": unique x, y shifted to a zero minimum)."""
    if not _check_arrays(x, y):
        return math.nan
    with _capture_exceptions():
        x, y = _extract_finite(x, y)
        if visual:
            x, y = _extract_unique(x, y)
            y -= y.min()
        return float(np.sum(x * _calc_weights(y), dtype=float))
    return math.nan


def cen(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(centre, fwhm)."""
    if not _check_arrays(x, y):
        return math.nan, math.nan
    with _capture_exceptions():
        x, y = _extract_finite(x, y)
        x, y = _extract_unique(x, y)
        return _calc_cen(x, y)
    return math.nan, math.nan


def _check_arrays(x: np.ndarray, y: np.ndarray) -> bool:
    if x.shape != y.shape:
        raise TypeError("x and y arrays do not have the same size.")
    if x.ndim != 1:
        raise TypeError("x and y arrays must have a single dimension.")
    return x.size != 0


def _extract_finite(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mask = np.isfinite(x) & np.isfinite(y)
    if not mask.any():
        raise ValueError("Input data has no finite values.")
    return x[mask], y[mask]


def _extract_unique(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, idx = np.unique(x, return_index=True)
    return x, y[idx]


@contextmanager
def _capture_exceptions():
    """As BLISS: floating-point errors raise, and any error ends the computation (the
    caller then returns NaN)."""
    try:
        with np.errstate(all="raise"):
            yield
    except Exception as exc:  # noqa: BLE001 - BLISS logs and gives NaN
        log.debug("curve statistics: %s", exc)


def _calc_weights(y: np.ndarray) -> Any:
    if (y < 0).any():
        y -= y.min()
    ysum = np.sum(y, dtype=float)
    if ysum:
        return y / ysum
    return float(1 / y.size)


def _optimize_gradient(gradient: np.ndarray, i: int, grad_down: bool | None) -> float:
    n = max(min(gradient.size // 4, 5), 1)
    if grad_down:
        idx_valid = np.where(gradient < 0)[0]
        selfunc: Any = min
    elif grad_down is None:
        idx_valid = np.where(gradient != 0)[0]

        def selfunc(v):
            return max(v.min(), v.max(), key=abs)
    else:
        idx_valid = np.where(gradient > 0)[0]
        selfunc = max
    idx = idx_valid[np.argsort(np.abs(idx_valid - i))]
    if not idx.size:
        if grad_down is None:
            return 0.0
        return _optimize_gradient(gradient, i, None)
    return selfunc(gradient[idx[:n]])


def _optimize_limits(x, y, y_lim, idx_lim, grad_down) -> tuple[float, float]:
    x_start, x_end = x[idx_lim]
    gradient = np.gradient(y, x)
    if not np.where(gradient != 0)[0].size:
        return x[0], x[-1]  # flat signal
    gradient_start = _optimize_gradient(gradient, idx_lim[0], grad_down=grad_down[0])
    gradient_end = _optimize_gradient(gradient, idx_lim[1], grad_down=grad_down[1])
    dmax = x[-1] - x[0]
    if gradient_start:
        dx = (y_lim[0] - y[idx_lim[0]]) / gradient_start
        if abs(dx) <= dmax:
            x_start += dx
    if gradient_end:
        dx = (y_lim[1] - y[idx_lim[1]]) / gradient_end
        if abs(dx) <= dmax:
            x_end += dx
    return x_start, x_end


def _cen_from_limits(x, y, y_lim, idx_lim, grad_down) -> tuple[float, float]:
    x_start, x_end = _optimize_limits(x, y, y_lim, idx_lim, grad_down)
    return (x_start + x_end) / 2, x_end - x_start


def _inlier_mask(x: np.ndarray, nsigma: float = 3) -> np.ndarray:
    """|x - median(x)| <= nsigma * 1.4826 * MAD (all inliers when MAD is 0)."""
    if x.size == 0:
        return np.array([], dtype=bool)
    diff = abs(x - np.median(x))
    n_mad = np.median(diff) * nsigma * 1.4826
    if n_mad == 0:
        return np.full(x.shape, True, dtype=bool)
    return diff <= n_mad


def savgol_smooth(y: np.ndarray, window_length: int, polyorder: int) -> np.ndarray:
    """scipy's ``savgol_filter(y, window_length, polyorder)`` (mode ``"interp"``):
    a least-squares polynomial fit over a sliding window; the first and last half
    windows take the values of a polynomial fitted to the first/last window."""
    y = np.asarray(y, dtype=float)
    if window_length % 2 != 1 or not 0 <= polyorder < window_length <= y.size:
        raise ValueError(f"savgol: need an odd window ({window_length}) <= data size "
                         f"({y.size}) and polyorder ({polyorder}) < window")
    half = window_length // 2
    t = np.arange(-half, half + 1, dtype=float)
    coeffs = np.linalg.pinv(np.vander(t, polyorder + 1, increasing=True))[0]
    out = np.empty_like(y)
    out[half:y.size - half] = np.correlate(y, coeffs, mode="valid")
    pos = np.arange(window_length, dtype=float)
    head = np.polyfit(pos, y[:window_length], polyorder)
    out[:half] = np.polyval(head, pos[:half])
    tail = np.polyfit(pos, y[-window_length:], polyorder)
    out[y.size - half:] = np.polyval(tail, pos[window_length - half:])
    return out


def _smooth(y: np.ndarray) -> np.ndarray:
    window_length = y.size // 4
    window_length += not (window_length % 2)
    poly_order = min(window_length - 1, 3)
    if poly_order:
        return savgol_smooth(y, window_length, poly_order)
    return y


def _extract_noise(y: np.ndarray) -> np.ndarray:
    return y - _smooth(y)


def _calc_cen(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    if len(x) == 1:
        return x[0], 0
    y_min, y_max = y.min(), y.max()
    y_half = (y_min + y_max) / 2
    y_lim: Any = [y_half, y_half]
    idx_max = x.size - 1
    idx_above_half: Any = np.where(y >= y_half)[0]
    if len(idx_above_half):
        max_left = idx_above_half[0] == 0
        max_right = idx_above_half[-1] == idx_max
    else:
        idx_above_half = [0, idx_max]
        max_left = max_right = True

    if not max_left and not max_right:  # a standard peak
        idx_lim = idx_above_half[[0, -1]]
        if idx_above_half.size == 1:
            idx_lim[0] -= 1
            idx_lim[1] += 1
        return _cen_from_limits(x, y, y_lim, idx_lim, [False, True])

    if max_left and max_right:  # a reversed peak
        index_below_half = np.where(y <= y_half)[0]
        idx_lim = index_below_half[[0, -1]]
        if index_below_half.size == 1:
            idx_lim[0] -= 1
            idx_lim[1] += 1
        return _cen_from_limits(x, y, y_lim, idx_lim, [True, False])

    # an edge or a partial peak
    idx_lim = [idx_above_half[0], idx_above_half[-1]]
    grad_down = [True, True] if max_left else [False, False]
    x_start, x_end = _optimize_limits(x, y, y_lim, idx_lim, grad_down)
    if max_left:
        idx_edge, x_half = idx_lim[0], x_end
    else:
        idx_edge, x_half = idx_lim[1], x_start

    stddev_above = np.std(_extract_noise(y[idx_above_half])) if idx_above_half.size >= 9 else 0
    frac_half = min(1 - min(6 * stddev_above / (y_max - y_half), 1), 0.9)

    if max(y[idx_edge] - y_half, 0) >= frac_half * (y_max - y_half):  # an edge
        index_below_half = np.where(y < y_half)[0]
        stddev_below = (np.std(_extract_noise(y[index_below_half]))
                        if index_below_half.size >= 9 else 0)
        y_max -= 3 * stddev_above
        y_min += 3 * stddev_below
        if y_min >= y_max:
            return x_half, math.nan  # too much noise for a width
        y_lim = y_min + (y_max - y_min) * np.array([0.12, 0.88])
        edge_mask = (y >= y_lim[0]) & (y <= y_lim[1])
        edge_idx = np.where(edge_mask)[0]
        edge_mask[edge_idx] = _inlier_mask(x[edge_mask])
        idx_lim = np.where(edge_mask)[0]
        if idx_lim.size < 2:
            return x_half, 0  # too sharp for a width
        idx_lim = idx_lim[[0, -1]]
        if max_left:
            y_lim = y_lim[::-1]
        center, width = _cen_from_limits(x, y, y_lim, idx_lim, grad_down)
        if abs(center - x_half) >= 0.2 * (x.max() - x.min()):
            return x_half, width
        return center, width

    position = x[np.argmax(y)]  # a partial peak: the maximum is the position
    return position, np.abs(position - x_half) * 2
