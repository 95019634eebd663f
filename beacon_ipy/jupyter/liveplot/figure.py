"""The matplotlib side of a live plot: one Figure, laid out per scan, redrawn cheaply.

Why blitting: a full matplotlib draw of the three-panel figure costs 100-200 ms on the
project machine, almost all of it text (tick labels, titles). During a scan only the
data change, so the figure is split in two:

* the *static background* (axes, ticks, labels, colorbars, notes), drawn in full only
  when it changes, and saved as pixels;
* the *dynamic artists* (data lines, images, legends, the progress title), marked
  ``animated`` and drawn over the restored background at every frame.

For the background to stay valid, axis limits and colour ranges grow in steps with some
headroom (:func:`.panels.grow`) instead of following every new point; when the scan ends, one
last full draw fits them tightly. A full draw from any source (a front-end resize, a
savefig) goes through :meth:`FigureView._on_draw`, which re-captures the background and
draws the dynamic artists, so nothing is ever missing.

Everything that touches the figure runs under :attr:`FigureView.lock`: the drawing
thread holds it while it applies a frame and renders; the ipympl canvas takes it before
handling front-end messages (zoom, resize) in the kernel's main thread.
"""

from __future__ import annotations

import io
import threading
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from beacon_ipy.jupyter.liveplot.canvas import image_widget, ipympl_canvas
from beacon_ipy.jupyter.liveplot.panels import Panels
from beacon_ipy.liveplot.frame import Frame, ImagePanel


class FigureView(Panels):
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
