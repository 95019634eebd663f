"""How each panel of a live plot's figure is updated from a frame, cheaply.

A part of :class:`~beacon_ipy.jupyter.liveplot.figure.FigureView` (a mixin: it uses the
view's ``figure``, ``axes``, ``_lines``, ``_images``, ``_auto``, ``_animate`` and
``_forget``). Limits and colour ranges grow in steps with headroom (:func:`grow`) so that
the static background (axes, ticks, labels) can be kept as pixels between frames; see
:mod:`.figure`. Curves (left and right y axes, log scale), the statistics box, mesh and
detector images, scatter maps and the spectrum.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from matplotlib import rcParams

from beacon_ipy.liveplot.frame import Frame, ImagePanel, ScatterPanel

#: Curves with at most this many points get point markers (step scans).
MARKER_LIMIT = 200
#: Margin added on each side when limits must grow (fraction of the data span).
HEADROOM = 0.2


def grow(current: tuple[float, float] | None, lo: float, hi: float,
         headroom: float = HEADROOM, slack: float = math.inf) -> tuple[float, float]:
    """Limits containing ``[lo, hi]``: ``current`` if it does and is at most ``slack``
    times too wide, else ``[lo, hi]`` with ``headroom`` (fraction of the span) on each
    side. Growing data thus change the limits a logarithmic number of times, not at
    every point."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return current if current is not None else (0.0, 1.0)
    span = hi - lo
    if span <= 0:
        span = abs(hi) * 0.1 or 1.0
    if current is not None:
        c0, c1 = current
        if c0 <= lo and c1 >= hi and (c1 - c0) <= slack * span:
            return current
        if max(c1, hi) - min(c0, lo) <= slack * span:  # grow, keeping what was shown
            return (lo - headroom * span if lo < c0 else c0,
                    hi + headroom * span if hi > c1 else c1)
    return lo - headroom * span, hi + headroom * span


def _bounds(arrays: list[np.ndarray]) -> tuple[float, float]:
    finite = [a[np.isfinite(a)] for a in arrays]
    finite = [a for a in finite if a.size]
    if not finite:
        return math.nan, math.nan
    return min(float(a.min()) for a in finite), max(float(a.max()) for a in finite)


class Panels:
    """The panel updates of a :class:`~.figure.FigureView`."""

    figure: Any
    axes: dict[str, Any]
    _lines: dict[str, Any]
    _images: dict[str, Any]
    _auto: dict[str, tuple]
    _colors: dict[str, str]
    _legend_keys: list[str]
    _stats_text: Any
    _stats_line: Any
    _animate: Any
    _forget: Any

    def _color(self, channel: str) -> str:
        color = self._colors.get(channel)
        if color is None:
            cycle = rcParams["axes.prop_cycle"].by_key().get("color") or ["C0"]
            color = self._colors[channel] = cycle[len(self._colors) % len(cycle)]
        return color

    # -- limits -------------------------------------------------------------------------
    def _user_moved(self, name: str, ax: Any) -> bool:
        """Did someone (the ipympl toolbar) change the limits we set last?"""
        expected = self._auto.get(name)
        return expected is not None and (ax.get_xlim(), ax.get_ylim()) != expected

    def _limits(self, name: str, ax: Any, xs: list[np.ndarray], ys: list[np.ndarray],
                tight: bool, fixed_x: tuple[float, float] | None = None,
                planned_x: tuple[float, float] | None = None, slack: float = math.inf,
                log: bool = False) -> None:
        """Stepwise autoscale (tight matplotlib autoscale when ``tight``), unless the user
        zoomed or panned this panel. ``fixed_x``: exact x limits; ``planned_x``: where x
        will go (the limits cover it from the start)."""
        if self._user_moved(name, ax):
            return
        if tight:
            ax.relim(visible_only=True)
            ax.autoscale_view()
            if fixed_x is not None:
                ax.set_xlim(*fixed_x)
        else:
            previous = self._auto.get(name)
            x0, x1 = _bounds(xs)
            if planned_x is not None:
                x0 = min(x0, planned_x[0]) if math.isfinite(x0) else planned_x[0]
                x1 = max(x1, planned_x[1]) if math.isfinite(x1) else planned_x[1]
            # x mostly grows one way: generous headroom, unless the range is planned
            x = fixed_x or grow(previous[0] if previous else None, x0, x1,
                                0.03 if planned_x is not None else 0.5)
            if log:  # grow in decades
                positive = [y[y > 0] for y in ys]
                lo, hi = _bounds(positive)
                old = previous[1] if previous else None
                lg = grow(tuple(np.log10(old)) if old and old[0] > 0 else None,
                          math.log10(lo) if lo > 0 else math.nan,
                          math.log10(hi) if hi > 0 else math.nan, slack=slack)
                y = (10 ** lg[0], 10 ** lg[1])
            else:
                y = grow(previous[1] if previous else None, *_bounds(ys), slack=slack)
            ax.set_xlim(*x)
            ax.set_ylim(*y)
        self._auto[name] = (ax.get_xlim(), ax.get_ylim())

    # -- panels -------------------------------------------------------------------------
    def _apply_curves(self, frame: Frame) -> None:
        ax = self.axes["curves"]
        if self._stats_line is not None:  # out of the autoscale; _apply_stats redraws it
            self._forget(self._stats_line)
            self._stats_line = None
        right = self.axes.get("curves_right")
        ax.set_xlabel(frame.xlabel, fontsize="small")
        ax.set_ylabel(frame.ylabel, fontsize="small")
        if right is not None:
            right.set_ylabel(frame.ylabel_right, fontsize="small")
        keys = []
        for curve in frame.curves:
            target = right if curve.right and right is not None else ax
            x, y = curve.x, curve.y
            if frame.log:  # nothing to draw at or below zero on a log axis
                y = np.where(y > 0, y, np.nan)
            line = self._lines.get(curve.key)
            if line is None or line.axes is not target:
                if line is not None:
                    self._forget(self._lines.pop(curve.key))
                (line,) = target.plot(x, y, color=self._color(curve.channel),
                                      label=curve.label, ls="--" if curve.right else "-")
                self._lines[curve.key] = self._animate(line)
            else:
                line.set_data(x, y)
            line.set_linewidth(1.5 if curve.current else 1.0)
            line.set_alpha(1.0 if curve.current else 0.4)
            line.set_marker("." if len(x) <= MARKER_LIMIT else "")
            keys.append(curve.key)
        for key in set(self._lines) - set(keys) - {"spectrum"}:
            self._forget(self._lines.pop(key))
        if keys != self._legend_keys:
            legend = (right or ax).get_legend()
            if legend is not None:
                self._forget(legend)
            if keys:
                self._animate((right or ax).legend(
                    [self._lines[k] for k in keys], [self._lines[k].get_label() for k in keys],
                    loc="upper right", fontsize="small"))
            self._legend_keys = keys
        for name, axes, right_side in (("curves", ax, False), ("curves_right", right, True)):
            if axes is None:
                continue
            mine = [c for c in frame.curves if c.right == right_side]
            self._limits(name, axes, [c.x for c in mine], [c.y for c in mine], frame.ended,
                         planned_x=frame.xlim, log=frame.log)

    def _apply_stats(self, frame: Frame) -> None:
        """The statistics of the shown curve: a text box, and the FWHM around cen as a
        shaded band (drawn after the limits are set: it never widens them)."""
        stats = frame.stats
        if self._stats_text is None:
            return
        if self._stats_line is not None:
            self._forget(self._stats_line)
            self._stats_line = None
        if stats is None:
            self._stats_text.set_text("")
            return
        name = stats.y.split(":")[-1] + (f"/{stats.monitor.split(':')[-1]}"
                                         if stats.monitor else "")
        self._stats_text.set_text(f"{name}: {stats.text()}")
        if math.isfinite(stats.cen) and math.isfinite(stats.fwhm) and stats.fwhm > 0:
            half = stats.fwhm / 2
            self._stats_line = self._animate(self.axes["curves"].axvspan(
                stats.cen - half, stats.cen + half, color="gray", alpha=0.12, lw=0))

    def _apply_scatter(self, panel: ScatterPanel, tight: bool) -> None:
        """Coloured dots at the motors' positions, one per point received."""
        from matplotlib.colors import LogNorm, Normalize

        ax = self.axes["scatter"]
        offsets = np.column_stack([panel.x, panel.y]) if len(panel.x) else np.empty((0, 2))
        values = panel.values[:len(offsets)]
        dots = self._images.get("scatter")
        if dots is None:
            dots = ax.scatter(offsets[:, 0], offsets[:, 1], c=values, s=16, cmap="viridis",
                              norm=LogNorm() if panel.log else Normalize())
            colorbar = self.figure.colorbar(dots, ax=ax, fraction=0.05, pad=0.02)
            colorbar.ax.tick_params(labelsize="small")
            colorbar.set_label(panel.clabel, fontsize="small")
            self._images["scatter"] = self._animate(dots)
        else:
            dots.set_offsets(offsets)
            dots.set_array(values)
        self._set_clim(dots, values, tight, panel.log)
        ax.set_title(panel.title, fontsize="small")
        ax.set_xlabel(panel.xlabel, fontsize="small")
        ax.set_ylabel(panel.ylabel, fontsize="small")
        if self._user_moved("scatter", ax):
            return
        previous = self._auto.get("scatter")
        for axis, data, planned, i in ((ax.set_xlim, panel.x, panel.xlim, 0),
                                       (ax.set_ylim, panel.y, panel.ylim, 1)):
            lo, hi = _bounds([data])
            if planned is not None:
                lo = min(lo, planned[0]) if math.isfinite(lo) else planned[0]
                hi = max(hi, planned[1]) if math.isfinite(hi) else planned[1]
            axis(*grow(previous[i] if previous else None, lo, hi, 0.05))
        self._auto["scatter"] = (ax.get_xlim(), ax.get_ylim())

    def _set_clim(self, mappable: Any, data: np.ndarray, tight: bool, log: bool) -> None:
        if log:
            data = data[data > 0] if data.size else data
        lo, hi = _bounds([data])
        if tight or not math.isfinite(lo):
            clim = (lo, hi) if math.isfinite(lo) else ((1.0, 10.0) if log else (0.0, 1.0))
        elif log:
            current = mappable.get_clim()
            clim = (min(lo, current[0]) if current[0] and current[0] > 0 else lo,
                    max(hi, current[1]) if current[1] else hi)
        else:
            clim = grow(mappable.get_clim(), lo, hi)
            if lo >= 0 > clim[0]:  # counts: no headroom below zero
                clim = (0.0, clim[1])
        if clim[1] <= clim[0]:
            clim = (clim[0], clim[0] * 10 if log else clim[0] + 1.0)
        mappable.set_clim(clim[0], clim[1])

    def _apply_spectrum(self, frame: Frame) -> None:
        ax, panel = self.axes["spectrum"], frame.spectrum
        assert panel is not None
        line = self._lines.get("spectrum")
        if line is None:
            (line,) = ax.plot(panel.x, panel.y, color="C3", lw=0.8)
            self._lines["spectrum"] = self._animate(line)
        else:
            line.set_data(panel.x, panel.y)
        ax.set_title(panel.label, fontsize="small")
        ax.set_xlabel(panel.xlabel, fontsize="small")
        ax.set_ylabel(panel.ylabel, fontsize="small")
        x0, x1 = panel.xrange
        # the latest spectrum may shrink a lot (off the peak): rescale when 10x too big
        self._limits("spectrum", ax, [], [panel.y], frame.ended,
                     fixed_x=(x0, x1) if x1 > x0 else None, slack=10.0)

    def _apply_image(self, name: str, panel: ImagePanel, tight: bool) -> None:
        ax = self.axes[name]
        data = panel.data if panel.data.size else np.full((1, max(1, panel.data.shape[-1])),
                                                          np.nan)
        image = self._images.get(name)
        if image is None:
            from matplotlib.colors import LogNorm

            image = ax.imshow(data, extent=panel.extent,
                              origin="upper" if name == "detector" else "lower",
                              aspect="equal" if name == "detector" else "auto",
                              interpolation="nearest", cmap="viridis",
                              norm=LogNorm() if panel.log else None)
            ax.set_autoscale_on(False)
            colorbar = self.figure.colorbar(image, ax=ax, fraction=0.05, pad=0.02)
            colorbar.ax.tick_params(labelsize="small")
            colorbar.set_label(panel.clabel, fontsize="small")
            self._images[name] = self._animate(image)
        else:
            image.set_data(data)
            image.set_extent(panel.extent)
        self._set_clim(image, data, tight, panel.log)
        ax.set_title(panel.title, fontsize="small")
        ax.set_xlabel(panel.xlabel, fontsize="small")
        ax.set_ylabel(panel.ylabel, fontsize="small")
        if self._user_moved(name, ax):
            return
        x0, x1, y0, y1 = panel.extent
        if not tight and panel.ylim is not None:  # the final extent is known
            y0, y1 = panel.ylim[0], max(y1, panel.ylim[1])
        elif not tight and name in self._auto:  # the extent grows with the points
            y0, y1 = self._auto[name][1][0], grow(self._auto[name][1], y0, y1, 0.5)[1]
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
        self._auto[name] = (ax.get_xlim(), ax.get_ylim())

