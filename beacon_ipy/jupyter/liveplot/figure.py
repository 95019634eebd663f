"""The matplotlib side of a live plot: one Figure, laid out per scan, redrawn cheaply.

Why blitting: a full matplotlib draw of the three-panel figure costs 100-200 ms on the
project machine, almost all of it text (tick labels, titles). During a scan only the
data change, so the figure is split in two:

* the *static background* (axes, ticks, labels, colorbars, notes), drawn in full only
  when it changes, and saved as pixels;
* the *dynamic artists* (data lines, images, legends, the progress title), marked
  ``animated`` and drawn over the restored background at every frame.

For the background to stay valid, axis limits and colour ranges grow in steps with some
headroom (:func:`grow`) instead of following every new point; when the scan ends, one
last full draw fits them tightly. A full draw from any source (a front-end resize, a
savefig) goes through :meth:`FigureView._on_draw`, which re-captures the background and
draws the dynamic artists, so nothing is ever missing.

Everything that touches the figure runs under :attr:`FigureView.lock`: the drawing
thread holds it while it applies a frame and renders; the ipympl canvas takes it before
handling front-end messages (zoom, resize) in the kernel's main thread.
"""

from __future__ import annotations

import io
import math
import threading
from typing import Any

import numpy as np
from matplotlib import rcParams
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from beacon_ipy.jupyter.liveplot.canvas import image_widget, ipympl_canvas
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


class FigureView:
    """A figure laid out for the current frame; :meth:`render` applies a frame and draws."""

    def __init__(self, backend: str, figsize: tuple[float, float] = (8.0, 5.5),
                 dpi: float = 80, title: str = "live plot"):
        self.backend = backend
        self.lock = threading.RLock()
        self.figure = Figure(figsize=figsize, dpi=dpi)
        self.widget: Any = None
        if backend == "ipympl":
            self.canvas = ipympl_canvas(self.figure, self.lock, title)
            self.widget = self.canvas
        else:
            self.canvas = FigureCanvasAgg(self.figure)
            if backend == "image":
                self.widget = image_widget(self.figure)
        self.canvas.mpl_connect("draw_event", self._on_draw)
        self.axes: dict[str, Any] = {}
        self._layout: tuple | None = None
        self._scan_nb: int | None = None
        self._lines: dict[str, Any] = {}
        self._legend_keys: list[str] = []
        self._images: dict[str, Any] = {}
        self._auto: dict[str, tuple] = {}  # limits we set last, per panel
        self._colors: dict[str, str] = {}
        self._title: Any = None
        self._note: Any = None
        self._dynamic: list[Any] = []  # animated artists, in drawing order
        self._background: Any = None
        self._static_key: tuple | None = None
        self.frames = 0
        self.full_draws = 0
        self.last_full = False

    # -- drawing (drawing thread) -------------------------------------------------------
    def render(self, frame: Frame) -> bytes | None:
        """Apply ``frame`` and draw it (in full only if the background changed); for the
        image backend, return the PNG."""
        with self.lock:
            self.apply(frame)
            key = self._key(frame)
            self.last_full = self._background is None or key != self._static_key
            if self.last_full:
                self.canvas.draw()  # -> _on_draw: background + dynamic artists
                self._static_key = key
                self.full_draws += 1
            else:
                self.canvas.restore_region(self._background)
                self._draw_dynamic(self.canvas.get_renderer())
                if self.backend == "ipympl":
                    self.canvas.blit()  # sends the changed pixels to the front end
            self.frames += 1
            if self.backend == "image":
                return self._buffer_png()
        return None

    def _key(self, frame: Frame) -> tuple:
        """Everything drawn in the static background: if it changes, draw in full."""
        parts: list[Any] = [frame.layout, frame.note, frame.ended, self.figure.dpi,
                            tuple(self.figure.bbox.bounds)]
        for name, ax in self.axes.items():
            parts.append((name, ax.get_xlim(), ax.get_ylim(), ax.get_xlabel(),
                          ax.get_ylabel(), ax.get_title()))
        parts.extend(image.get_clim() for image in self._images.values())
        return tuple(parts)

    def _on_draw(self, event: Any) -> None:
        """After any full draw: keep the background, then draw the dynamic artists."""
        if self.canvas.is_saving():
            # savefig: axes draw their animated artists themselves; add the figure's own
            for artist in self._dynamic:
                if artist.axes is None and artist.get_visible():
                    artist.draw(event.renderer)
            return
        self._background = self.canvas.copy_from_bbox(self.figure.bbox)
        self._draw_dynamic(event.renderer)

    def _draw_dynamic(self, renderer: Any) -> None:
        for artist in self._dynamic:
            if artist.get_visible() and artist.get_figure() is not None:
                artist.draw(renderer)

    def _animate(self, artist: Any) -> Any:
        artist.set_animated(True)
        self._dynamic.append(artist)
        self._dynamic.sort(key=_draw_order)
        return artist

    def _forget(self, artist: Any) -> None:
        if artist in self._dynamic:
            self._dynamic.remove(artist)
        artist.remove()

    def _buffer_png(self) -> bytes:
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(np.asarray(self.canvas.buffer_rgba())).save(buf, format="png",
                                                                    compress_level=1)
        return buf.getvalue()

    def png(self) -> bytes:
        """A PNG of the figure as it is now (drawn in full)."""
        with self.lock:
            self.canvas.draw()
            return self._buffer_png()

    def apply(self, frame: Frame) -> None:
        if frame.layout != self._layout:
            self._rebuild(frame.layout)
        if frame.scan_nb != self._scan_nb:
            self._auto.clear()  # a new scan: autoscale again even if the user had zoomed
            self._scan_nb = frame.scan_nb
        self._title.set_text(frame.title)
        self._note.set_text(frame.note)
        if "curves" in self.axes:
            self._apply_curves(frame)
            self._apply_stats(frame)
        if "mesh" in self.axes and frame.mesh is not None:
            self._apply_image("mesh", frame.mesh, frame.ended)
        if "scatter" in self.axes and frame.scatter is not None:
            self._apply_scatter(frame.scatter, frame.ended)
        if "detector" in self.axes and frame.detector is not None \
                and frame.detector.data is not None:
            d = frame.detector
            h, w = d.data.shape
            self._apply_image("detector", ImagePanel(
                d.data, (-0.5, w - 0.5, h - 0.5, -0.5), "x (pixel)", "y (pixel)", d.label,
                d.name.split(":")[0], log=frame.log), frame.ended)
            # the frame number changes at every frame: drawn over the background
            self._detector_text.set_text(f"frame {d.index + 1}/{d.frames}")
        if "spectrum" in self.axes and frame.spectrum is not None:
            self._apply_spectrum(frame)
        if "waterfall" in self.axes and frame.waterfall is not None:
            self._apply_image("waterfall", frame.waterfall, frame.ended)

    def _rebuild(self, layout: tuple) -> None:
        fig = self.figure
        fig.clear()
        self.axes.clear()
        self._lines.clear()
        self._images.clear()
        self._auto.clear()
        self._dynamic.clear()
        self._background = None
        self._legend_keys = []
        self._layout = layout
        if layout == ("waiting",):
            ax = fig.add_subplot(1, 1, 1)
            ax.text(0.5, 0.5, "waiting for the next scan...", ha="center", va="center",
                    transform=ax.transAxes, color="gray")
            ax.set_axis_off()
            self.axes["waiting"] = ax
        else:
            main, with_spectra, with_image, log = layout
            bottom = (["spectrum", "waterfall"] if with_spectra else []) + \
                (["detector"] if with_image else [])
            gs = fig.add_gridspec(2 if bottom else 1, max(1, len(bottom)), left=0.09,
                                  right=0.9 if main[0] == "curves" and main[-1] is True
                                  else 0.94, bottom=0.09, top=0.9, hspace=0.42,
                                  wspace=0.32, height_ratios=[1.25, 1] if bottom else None)
            ax = self.axes[main[0]] = fig.add_subplot(gs[0, :])
            if main[0] == "curves":
                if log:
                    ax.set_yscale("log")
                if main[-1] is True:  # curves on a right y axis
                    right = self.axes["curves_right"] = ax.twinx()
                    if log:
                        right.set_yscale("log")
            for i, name in enumerate(bottom):
                self.axes[name] = fig.add_subplot(gs[1, i])
            for ax in self.axes.values():
                ax.tick_params(labelsize="small")
        self._stats_text = None
        self._stats_line = None
        self._detector_text = None
        if "detector" in self.axes:
            self._detector_text = self._animate(self.axes["detector"].text(
                0.02, 0.97, "", transform=self.axes["detector"].transAxes, va="top",
                ha="left", fontsize="small", color="white"))
        if "curves" in self.axes:
            ax = self.axes["curves"]
            self._stats_text = self._animate(ax.text(
                0.01, 0.98, "", transform=ax.transAxes, va="top", ha="left",
                fontsize="small", family="monospace",
                bbox={"boxstyle": "round", "fc": "white", "alpha": 0.7, "lw": 0}))
        self._title = self._animate(fig.suptitle("", fontsize="medium"))
        self._note = fig.text(0.01, 0.005, "", color="tab:red", fontsize="small",
                              va="bottom")

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

    # -- lifecycle (gevent thread) -----------------------------------------------------
    def publish(self, png: bytes | None) -> None:
        """Show a rendered PNG in the image widget (the other canvases show themselves)."""
        if png is not None and self.widget is not None and self.backend == "image":
            self.widget.value = png

    def close(self) -> None:
        with self.lock:
            if self.widget is not None:
                self.widget.close()
            self.figure.clear()


def _draw_order(artist: Any) -> int:
    """Images, then lines, then legends, then figure texts (the title) on top."""
    from matplotlib.image import AxesImage
    from matplotlib.legend import Legend
    from matplotlib.lines import Line2D

    for rank, kind in enumerate((AxesImage, Line2D, Legend)):
        if isinstance(artist, kind):
            return rank
    return 3
