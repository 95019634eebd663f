"""Build the :class:`~.frame.Frame` of one redraw: the plan (:mod:`.selection`) applied to
the scan buffers (:mod:`.data`).

``build_frame(models, session, choice, ...)`` shows one scan (the newest, or the one the
user pinned) and, for curves, earlier scans on the same x axis as faded lines. Curves are
divided point by point by the monitor when one is chosen; meshes become an image of
their grid (or coloured dots without a regular grid), filled as points arrive; a 2D
detector's newest frame reference is handed over for the drawing thread to read. The
shown scan's first curve is copied at full resolution for its statistics
(:mod:`.stats`, computed in the drawing thread). No matplotlib, no Jupyter.
"""

from __future__ import annotations

import numpy as np

from beacon_ipy.liveplot.data import ScanModel, channel_label
from beacon_ipy.liveplot.frame import (
    MAX_DRAW_POINTS,
    Curve,
    DetectorPanel,
    Frame,
    ImagePanel,
    ScatterPanel,
    StatsSource,
    axis_label,
    envelope,
    progress,
    spectrum_panels,
)
from beacon_ipy.liveplot.selection import Choice, Plan, plan_scan


def build_frame(models: list[ScanModel], session: str, choice: Choice | None,
                history: int, max_draw: int = MAX_DRAW_POINTS, error: str = "",
                shown: int | None = None) -> Frame:
    """The frame showing scan ``shown`` (default: the newest of ``models``, which are in
    scan-number order) and, overlaid when they share its x axis, up to ``history``
    earlier scans."""
    if not models:
        return Frame(("waiting",), f"{session}: waiting for a scan", note=error)
    choice = choice or Choice()
    by_nb = {m.scan_nb: m for m in models}
    current = by_nb.get(shown, models[-1]) if shown is not None else models[-1]
    points = current.points
    title = f"{session} #{current.scan_nb}: {current.title}  {progress(current, points)}"
    plan = plan_scan(current, choice)
    frame = Frame((), title, scan_nb=current.scan_nb, points=points, ended=current.ended,
                  log=plan.log, plan=plan)
    frame.scans = [(m.scan_nb, m.title, not m.ended) for m in models]
    running = [m.scan_nb for m in models if not m.ended and m is not current]
    notes = list(plan.notes)
    if running:
        notes.append(f"also running: {', '.join(f'#{n}' for n in running)}")
    if (plan.kind == "scatter" and plan.y
            and (plan.grid is not None or all(a in current.columns for a in plan.axes))):
        if plan.grid is not None:
            frame.mesh = _grid_panel(current, plan)
            main: tuple = ("mesh", plan.grid)
        else:
            frame.scatter = _scatter_panel(current, plan)
            main = ("scatter", plan.axes)
    else:
        main = ("curves", plan.x, bool(plan.y_right))
        _curves_panel(frame, models, current, plan, choice, history, max_draw)
    spectra = current.spectra and plan.spectra and spectrum_panels(current, plan.spectra[0],
                                                                    max_draw)
    if spectra:
        frame.spectrum, frame.waterfall = spectra
    if plan.images:
        stream = current.images[plan.images[0]]
        if stream.latest is not None:
            frame.detector = DetectorPanel(stream.meta.name, channel_label(stream.meta),
                                           stream.latest, stream.latest_index, stream.points)
    frame.layout = (main, bool(spectra), bool(plan.images), plan.log)
    if error:
        notes.append(error)
    frame.note = "; ".join(notes)
    return frame


def _series(model: ScanModel, names: list[str], x: str | None,
            monitor: str | None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Aligned x and y copies (x = point index when ``x`` is None), y divided by the
    monitor (points where it is 0 become NaN)."""
    wanted = names + [n for n in (x, monitor) if n and n not in names]
    idx, ys = model.columns.series(wanted)
    xs = ys[x] if x else idx.astype(float)
    if monitor:
        mon = ys[monitor]
        with np.errstate(divide="ignore", invalid="ignore"):
            ys = {n: np.where(mon != 0, ys[n] / mon, np.nan) for n in names}
    return xs, {n: ys[n] for n in names}


def _label(model: ScanModel, name: str, monitor: str | None) -> str:
    meta = model.channels[name]
    if monitor:
        return f"{meta.display_name} / {model.channels[monitor].display_name}"
    return channel_label(meta)


def _curves_panel(frame: Frame, models: list[ScanModel], current: ScanModel, plan: Plan,
                  choice: Choice, history: int, max_draw: int) -> None:
    x = plan.x
    xmeta = current.channels.get(x) if x else None
    frame.xlabel = channel_label(xmeta) if xmeta else "point"
    frame.xlim = _planned_range(current, x)
    monitor = plan.normalize
    if monitor:
        frame.ylabel = (_label(current, plan.y[0], monitor) if len(plan.y) == 1
                        else f"/ {current.channels[monitor].display_name}")
        frame.ylabel_right = (_label(current, plan.y_right[0], monitor)
                              if plan.y_right else "")
    else:
        frame.ylabel = axis_label([current.channels[n] for n in plan.y])
        frame.ylabel_right = axis_label([current.channels[n] for n in plan.y_right])
    earlier = [m for m in models if m.scan_nb < current.scan_nb and m.mesh is None]
    overlaid = []
    for model in reversed(earlier):
        if len(overlaid) >= history:
            break
        other = plan_scan(model, choice)
        if other.kind == "curves" and other.x == x:
            overlaid.append((model, other))
    for model, other in reversed(overlaid):
        frame.curves.extend(_curves(model, other, max_draw, False))
    frame.curves.extend(_curves(current, plan, max_draw, True))
    first = plan.y[0] if plan.y else (plan.y_right[0] if plan.y_right else None)
    if first is not None and first != x:
        xs, ys = _series(current, [first], x, monitor)
        frame.stats_source = StatsSource(current.scan_nb, x, first, monitor, xs, ys[first],
                                         current.ended)


def _curves(model: ScanModel, plan: Plan, max_draw: int, current: bool) -> list[Curve]:
    names = [n for n in plan.curves if n != plan.x]
    if not names:
        return []
    x, ys = _series(model, names, plan.x, plan.normalize)
    out = []
    for name in names:
        cx, cy = envelope(x, ys[name], max_draw)
        display = model.channels[name].display_name
        if plan.normalize:
            display = f"{display}/{model.channels[plan.normalize].display_name}"
        out.append(Curve(f"{name}#{model.scan_nb}", f"{display} #{model.scan_nb}", name,
                         cx, cy, current, right=name in plan.y_right))
    return out


def _planned_range(model: ScanModel, x_axis: str | None) -> tuple[float, float] | None:
    """Where a step scan's x axis goes: the channel's ``start``/``stop`` metadata (BLISS),
    scan_info ``start``/``stop`` of its first motor, or the point range."""
    if x_axis is None:
        return (0.0, float(model.npoints - 1)) if model.npoints > 1 else None
    described = (model.info.get("channels") or {}).get(x_axis) or {}
    try:
        if "start" in described and "stop" in described:
            lo, hi = sorted((float(described["start"]), float(described["stop"])))
        elif model.masters and x_axis == model.masters[0]:
            start, stop = model.info["start"], model.info["stop"]
            lo, hi = sorted((float(np.ravel(start)[0]), float(np.ravel(stop)[0])))
        else:
            return None
    except (KeyError, TypeError, ValueError, IndexError):
        return None
    return (lo, hi) if np.isfinite(lo) and np.isfinite(hi) and hi > lo else None


def _spacing(start: float, stop: float, n: int) -> float:
    return (stop - start) / (n - 1) if n > 1 else 1.0


def _axis_labels(model: ScanModel, plan: Plan) -> list[str]:
    return [channel_label(model.channels[n]) if n in model.channels else str(n or "")
            for n in plan.axes]


def _grid_panel(model: ScanModel, plan: Plan) -> ImagePanel:
    """The mesh as an image of its grid (fast axis horizontal), NaN where no point yet."""
    n_slow, n_fast = plan.grid  # type: ignore[misc]
    value = plan.y[0]
    idx, ys = _series(model, [value], None, plan.normalize)
    flat = np.full(n_slow * n_fast, np.nan)
    idx = idx.astype(np.intp)
    ok = idx < len(flat)
    flat[idx[ok]] = ys[value][ok]
    grid = flat.reshape(n_slow, n_fast)
    if plan.backnforth:
        grid[1::2] = grid[1::2, ::-1].copy()
    if plan.extent is not None:
        x0, x1, y0, y1 = plan.extent
    else:
        x0, x1, y0, y1 = 0.0, n_fast - 1.0, 0.0, n_slow - 1.0
    dx, dy = _spacing(x0, x1, n_fast) / 2, _spacing(y0, y1, n_slow) / 2
    xlabel, ylabel = _axis_labels(model, plan)
    meta = model.channels[value]
    return ImagePanel(grid, (x0 - dx, x1 + dx, y0 - dy, y1 + dy), xlabel, ylabel,
                      _label(model, value, plan.normalize), f"{meta.display_name} #{model.scan_nb}",
                      log=plan.log)


def _scatter_panel(model: ScanModel, plan: Plan) -> ScatterPanel:
    """The mesh as coloured dots at the motors' positions (no regular grid known)."""
    value = plan.y[0]
    ax, ay = plan.axes
    _, ys = _series(model, [value, ax, ay], None, None)  # type: ignore[list-item]
    values = _series(model, [value], None, plan.normalize)[1][value]
    xlabel, ylabel = _axis_labels(model, plan)
    meta = model.channels[value]
    return ScatterPanel(ys[ax], ys[ay], values, xlabel, ylabel,  # type: ignore[index]
                        _label(model, value, plan.normalize),
                        f"{meta.display_name} #{model.scan_nb}",
                        _planned_range(model, ax), _planned_range(model, ay), plan.log)
