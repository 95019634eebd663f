"""A snapshot of what a live plot shows, built from the scan models in a few milliseconds.

Why: drawing runs in a worker thread (it takes tens of milliseconds, see
docs/liveplot.md) while ingestion keeps filling the buffers in the gevent thread. The
drawing thread must never read a buffer that is being written, so the gevent side builds
a :class:`Frame` of *copies* (decimated to what the screen can show) and hands it over.
No matplotlib here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from beacon_ipy.liveplot.data import ScanModel, channel_label
from beacon_ipy.liveplot.selection import Plan
from beacon_ipy.liveplot.stats import CurveStats
from beacon_ipy.scans.streams import StreamDescription

#: Default number of points drawn per curve (min/max envelope beyond it).
MAX_DRAW_POINTS = 1000


@dataclass
class Curve:
    """One line: a counter of one scan against that scan's x axis."""

    key: str  # "<channel>#<scan_nb>": identifies the line across frames
    label: str  # legend text, with the scan number
    channel: str
    x: np.ndarray
    y: np.ndarray
    current: bool  # of the shown scan (older ones are drawn faded)
    right: bool = False  # on the right y axis


@dataclass
class ImagePanel:
    """An image (mesh map or waterfall) with its axes' extent and labels."""

    data: np.ndarray
    extent: tuple[float, float, float, float]
    xlabel: str
    ylabel: str
    clabel: str
    title: str = ""
    ylim: tuple[float, float] | None = None  # the final y range, if known in advance
    log: bool = False  # logarithmic colour scale


@dataclass
class ScatterPanel:
    """A mesh without a regular grid: one coloured dot per point, as they arrive."""

    x: np.ndarray
    y: np.ndarray
    values: np.ndarray
    xlabel: str
    ylabel: str
    clabel: str
    title: str
    xlim: tuple[float, float] | None = None
    ylim: tuple[float, float] | None = None
    log: bool = False


@dataclass
class DetectorPanel:
    """The newest frame of a 2D detector: read from its file by the drawing thread."""

    name: str
    label: str
    ref: Any  # (file, path, index)
    index: int  # frame number in the scan
    frames: int  # frames published so far
    data: np.ndarray | None = None  # the frame, read by the drawing thread


@dataclass
class StatsSource:
    """The curve whose statistics are shown: full resolution (not the drawn envelope)."""

    scan_nb: int
    x_name: str | None
    y_name: str
    monitor: str | None
    x: np.ndarray
    y: np.ndarray
    ended: bool


@dataclass
class SpectrumPanel:
    """The latest spectrum of a 1d channel."""

    x: np.ndarray
    y: np.ndarray
    xlabel: str
    ylabel: str
    label: str
    xrange: tuple[float, float] = (0.0, 1.0)  # of all bins (x may be decimated)


@dataclass
class Frame:
    """Everything the figure shows at one redraw."""

    layout: tuple  # identity of the axes layout: a change rebuilds the figure
    title: str
    note: str = ""
    scan_nb: int | None = None
    points: int = 0
    ended: bool = False
    curves: list[Curve] = field(default_factory=list)
    xlim: tuple[float, float] | None = None  # the scan's planned x range, if known
    xlabel: str = ""
    ylabel: str = ""
    spectrum: SpectrumPanel | None = None
    waterfall: ImagePanel | None = None
    mesh: ImagePanel | None = None
    scatter: ScatterPanel | None = None
    detector: DetectorPanel | None = None
    log: bool = False  # logarithmic y (curves) or colour (maps)
    ylabel_right: str = ""
    plan: Plan | None = None
    stats_source: StatsSource | None = None
    stats: CurveStats | None = None  # filled by the drawing thread
    scans: list[tuple[int, str, bool]] = field(default_factory=list)  # (nb, title, running)


def envelope(x: np.ndarray, y: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ~``max_points`` points keeping each chunk's minimum and maximum (in order).

    Drawing 20 000 noisy points costs ~300 ms in Agg; a screen shows ~1000 pixels. The
    min/max envelope keeps peaks and noise band visible where plain striding loses them.
    """
    n = len(y)
    if n <= max_points or max_points < 4:
        return x, y
    chunk = -(-n // (max_points // 2))
    m = (n // chunk) * chunk
    blocks = y[:m].reshape(-1, chunk)
    lo, hi = blocks.argmin(axis=1), blocks.argmax(axis=1)
    base = np.arange(0, m, chunk)
    idx = np.empty(2 * len(base), dtype=np.intp)
    idx[0::2] = np.minimum(lo, hi) + base
    idx[1::2] = np.maximum(lo, hi) + base
    if m < n:
        idx = np.concatenate([idx, np.arange(m, n)])
    return x[idx], y[idx]


def axis_label(metas: list[StreamDescription]) -> str:
    if len(metas) == 1:
        return channel_label(metas[0])
    units = {m.unit for m in metas}
    return units.pop() if len(units) == 1 else ""


def progress(model: ScanModel, points: int) -> str:
    done = f"{points}/{model.npoints}" if model.npoints else f"{points}"
    if model.ended:
        return f"[{done} pts, {model.end_reason}]"
    return f"[{done} pts]"


def spectrum_panels(model: ScanModel, name: str,
                     max_draw: int) -> tuple[SpectrumPanel, ImagePanel] | None:
    hist = model.spectra[name]
    if hist.latest is None:
        return None
    meta = model.channels[name]
    # the energy scale: the stream's own info, else scan_info["instrument"][<device>]
    device = (model.info.get("instrument") or {}).get(name.split(":")[0])
    calib = {**(device if isinstance(device, dict) else {}), **dict(meta.info)}
    step = calib.get("energy_per_bin")
    try:
        step = float(step) if step is not None else None
    except (TypeError, ValueError):
        step = None
    if step:
        x = np.arange(hist.nbins) * step
        xlabel = f"energy ({calib.get('energy_unit', '')})".replace(" ()", "")
    else:
        step, x, xlabel = 1.0, np.arange(hist.nbins, dtype=float), "channel"
    sx, sy = envelope(x, hist.latest, max_draw)
    spectrum = SpectrumPanel(sx, sy.copy(), xlabel, channel_label(meta),
                             f"{meta.display_name} #{model.scan_nb}, last point",
                             (float(x[0]), float(x[-1])))
    rows, stride = hist.waterfall()
    extent = (-0.5 * step, (hist.nbins - 0.5) * step, -0.5 * stride,
              (max(len(rows), 1) - 0.5) * stride)
    waterfall = ImagePanel(rows, extent, xlabel, "point", channel_label(meta),
                           f"{meta.display_name} per point",
                           (-0.5, model.npoints - 0.5) if model.npoints else None)
    return spectrum, waterfall


