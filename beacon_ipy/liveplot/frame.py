"""A snapshot of what a live plot shows, built from the scan models in a few milliseconds.

Why: drawing runs in a worker thread (it takes tens of milliseconds, see
docs/liveplot.md) while ingestion keeps filling the buffers in the gevent thread. The
drawing thread must never read a buffer that is being written, so the gevent side builds
a :class:`Frame` of *copies* (decimated to what the screen can show) and hands it over.
No matplotlib here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from beacon_ipy.liveplot.data import ChannelMeta, ScanModel

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
    current: bool  # of the newest scan (older ones are drawn faded)


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


def _axis_label(metas: list[ChannelMeta]) -> str:
    if len(metas) == 1:
        return metas[0].label()
    units = {m.unit for m in metas}
    return units.pop() if len(units) == 1 else ""


def _progress(model: ScanModel, points: int) -> str:
    done = f"{points}/{model.npoints}" if model.npoints else f"{points}"
    if model.ended:
        return f"[{done} pts, {model.end_reason}]"
    return f"[{done} pts]"


def _spacing(start: float, stop: float, n: int) -> float:
    return (stop - start) / (n - 1) if n > 1 else 1.0


def _mesh_panel(model: ScanModel, counter: str) -> ImagePanel:
    n_slow, n_fast = model.mesh  # type: ignore[misc]
    idx, ys = model.columns.series([counter])
    flat = np.full(n_slow * n_fast, np.nan)
    ok = idx < len(flat)
    flat[idx[ok]] = ys[counter][ok]
    grid = flat.reshape(n_slow, n_fast)
    if model.backnforth:
        grid[1::2] = grid[1::2, ::-1].copy()
    starts, stops = model.info.get("start"), model.info.get("stop")
    try:
        x0, y0 = float(starts[0]), float(starts[1])  # type: ignore[index]
        x1, y1 = float(stops[0]), float(stops[1])  # type: ignore[index]
    except (TypeError, IndexError, ValueError, KeyError):
        x0, x1, y0, y1 = 0.0, n_fast - 1.0, 0.0, n_slow - 1.0
    dx, dy = _spacing(x0, x1, n_fast) / 2, _spacing(y0, y1, n_slow) / 2
    names = model.masters[:2] + ["fast axis", "slow axis"][len(model.masters[:2]):]
    labels = [model.channels[n].label() if n in model.channels else n for n in names]
    meta = model.channels[counter]
    return ImagePanel(grid, (x0 - dx, x1 + dx, y0 - dy, y1 + dy), labels[0], labels[1],
                      meta.label(), f"{meta.display} #{model.scan_nb}")


def _spectrum_panels(model: ScanModel, name: str,
                     max_draw: int) -> tuple[SpectrumPanel, ImagePanel] | None:
    hist = model.spectra[name]
    if hist.latest is None:
        return None
    meta = model.channels[name]
    step = meta.info.get("energy_per_bin")
    try:
        step = float(step) if step is not None else None
    except (TypeError, ValueError):
        step = None
    if step:
        x = np.arange(hist.nbins) * step
        xlabel = f"energy ({meta.info.get('energy_unit', '')})".replace(" ()", "")
    else:
        step, x, xlabel = 1.0, np.arange(hist.nbins, dtype=float), "channel"
    sx, sy = envelope(x, hist.latest, max_draw)
    spectrum = SpectrumPanel(sx, sy.copy(), xlabel, meta.label(),
                             f"{meta.display} #{model.scan_nb}, last point",
                             (float(x[0]), float(x[-1])))
    rows, stride = hist.waterfall()
    extent = (-0.5 * step, (hist.nbins - 0.5) * step, -0.5 * stride,
              (max(len(rows), 1) - 0.5) * stride)
    waterfall = ImagePanel(rows, extent, xlabel, "point", meta.label(),
                           f"{meta.display} per point",
                           (-0.5, model.npoints - 0.5) if model.npoints else None)
    return spectrum, waterfall


def build_frame(models: list[ScanModel], session: str, counters: list[str] | None,
                spectrum: list[str] | None, history: int,
                max_draw: int = MAX_DRAW_POINTS, error: str = "") -> Frame:
    """The frame showing ``models[-1]`` (the newest scan) and, overlaid when they share
    its x axis, up to ``history`` earlier scans."""
    if not models:
        return Frame(("waiting",), f"{session}: waiting for a scan", note=error)
    current = models[-1]
    points = current.points
    title = f"{session} #{current.scan_nb}: {current.title}  {_progress(current, points)}"
    wanted, missing = current.resolve(counters, dim=0)
    notes = []
    if missing:
        notes.append(f"no counter {', '.join(map(repr, missing))} in this scan "
                     f"(it has {', '.join(m.display for m in current.channels.values() if m.dim == 0)})")
    spectra, _ = current.resolve(spectrum, dim=1)
    panels = current.spectra and spectra and _spectrum_panels(current, spectra[0], max_draw)
    x_axis = current.x_axis()
    frame = Frame((), title, scan_nb=current.scan_nb, points=points, ended=current.ended)
    if current.mesh is not None and wanted:
        frame.mesh = _mesh_panel(current, wanted[0])
        main = ("mesh", current.mesh)
    else:
        main = ("curves", x_axis)
        xmeta = current.channels.get(x_axis) if x_axis else None
        frame.xlabel = xmeta.label() if xmeta else "point"
        frame.xlim = _planned_range(current, x_axis)
        frame.ylabel = _axis_label([current.channels[n] for n in wanted])
        overlaid = [m for m in models[:-1] if m.mesh is None and m.x_axis() == x_axis]
        for model in overlaid[-history:] if history > 0 else []:
            frame.curves.extend(_curves(model, counters, x_axis, max_draw, False))
        frame.curves.extend(_curves(current, counters, x_axis, max_draw, True))
    if panels:
        frame.spectrum, frame.waterfall = panels
    frame.layout = (main, bool(panels))
    if error:
        notes.append(error)
    frame.note = "; ".join(notes)
    return frame


def _planned_range(model: ScanModel, x_axis: str | None) -> tuple[float, float] | None:
    """Where a step scan's x axis goes: scan_info ``start``/``stop`` of its first motor
    (or the point range when x is the point index and npoints is known)."""
    if x_axis is None:
        return (0.0, float(model.npoints - 1)) if model.npoints > 1 else None
    if not model.masters or x_axis != model.masters[0]:
        return None
    try:
        start, stop = model.info["start"], model.info["stop"]
        lo, hi = sorted((float(np.ravel(start)[0]), float(np.ravel(stop)[0])))
    except (KeyError, TypeError, ValueError, IndexError):
        return None
    return (lo, hi) if np.isfinite(lo) and np.isfinite(hi) and hi > lo else None


def _curves(model: ScanModel, counters: list[str] | None, x_axis: str | None,
            max_draw: int, current: bool) -> list[Curve]:
    names, _ = model.resolve(counters, dim=0)
    names = [n for n in names if n != x_axis]
    if not names:
        return []
    idx, ys = model.columns.series(names + ([x_axis] if x_axis else []))
    x = ys.pop(x_axis) if x_axis else idx.astype(float)
    out = []
    for name in names:
        cx, cy = envelope(x, ys[name], max_draw)
        display = model.channels[name].display
        out.append(Curve(f"{name}#{model.scan_nb}", f"{display} #{model.scan_nb}", name,
                         cx, cy, current))
    return out
