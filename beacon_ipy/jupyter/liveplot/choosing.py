"""The user's side of a live plot: what to draw (``select``), which scan, statistics, controls.

:class:`Choosing` is a part of :class:`~beacon_ipy.jupyter.liveplot.plot.LivePlot` (a
mixin: it uses the plot's ``session``, ``follower``, ``view`` and ``_mark_dirty``). The
choice (x, y, log, monitor, spectrum: :class:`~beacon_ipy.liveplot.selection.Choice`)
starts from what the session's earlier plots chose (:data:`~beacon_ipy.liveplot.choices.
CHOICES`), and every change is remembered there. Statistics and the detector frame are
computed in the drawing thread (:meth:`Choosing._render`), the widget controls
(:mod:`.controls`) refreshed after each frame.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from beacon_ipy.jupyter import mainhub
from beacon_ipy.liveplot.choices import CHOICES
from beacon_ipy.liveplot.frame import Frame
from beacon_ipy.liveplot.images import FrameReader
from beacon_ipy.liveplot.selection import Choice
from beacon_ipy.liveplot.stats import CurveStats, curve_stats

log = logging.getLogger("beacon_ipy.jupyter.liveplot")

#: "argument not given" (None is a value: back to the scan's default).
UNSET: Any = object()


class Choosing:
    """What to draw and what the user sees of it; see the module docstring."""

    session: Any
    follower: Any
    view: Any
    _mark_dirty: Callable[[], None]

    def _init_choice(self, counters: Any, given: dict[str, Any], remember: bool) -> None:
        """Start from the session's remembered choice, then what the caller gave."""
        y = given.get("y", UNSET)
        if counters is not None and y is not UNSET:
            raise TypeError("give the counters as y=... or as counters=..., not both")
        self.remember = bool(remember)
        self._choice = CHOICES.get(self.session.name) if self.remember else Choice()
        given = {k: v for k, v in {**given, "y": y if counters is None else counters
                                   }.items() if v is not UNSET}
        if given:
            self._choice = self._choice.updated(**given)
            if self.remember:
                CHOICES.set(self.session.name, self._choice)
        self._pinned: int | None = None  # the scan shown (None: the newest)
        self._reader = FrameReader()
        self._last_stats: CurveStats | None = None
        self._final_stats: dict[int, CurveStats] = {}
        self.last_frame: Frame | None = None
        #: Called (on the main hub) with the plot after each drawn frame.
        self.on_frame: list[Callable[[Any], None]] = []
        self._controls: Any = None
        self._app: Any = None

    @property
    def choice(self) -> Choice:
        """What the user chose (x, y, log, normalize, spectrum; None = the scan's)."""
        return self._choice

    def select(self, *, x: str | None = UNSET, y: str | Sequence[str] | None = UNSET,
               log: bool = UNSET, normalize: str | None = UNSET,
               spectrum: str | Sequence[str] | None = UNSET, scan: int | None = UNSET,
               ) -> Choice:
        """Change what is plotted; arguments not given stay as they are, None means the
        scan's default. ``x``: the x channel (``"index"``: the point index); ``y``: one
        or several counters; ``log``: logarithmic y (colour for maps); ``normalize``: a
        monitor channel to divide by; ``spectrum``: the 1d channel; ``scan``: the scan
        number to show (None: always the newest). Remembered for the next scans of the
        session (except ``scan``). Returns the new choice."""
        changes = {k: v for k, v in {"x": x, "y": y, "log": log, "normalize": normalize,
                                     "spectrum": spectrum}.items() if v is not UNSET}
        if scan is not UNSET:
            if scan is not None and (not isinstance(scan, int)
                                     or scan not in self.follower.models):
                raise ValueError(f"scan {scan!r} is not one the plot keeps "
                                 f"({sorted(self.follower.models)}); None: the newest")
            self._pinned = scan
        if changes:
            self._choice = self._choice.updated(**changes)
            if self.remember:
                CHOICES.set(self.session.name, self._choice)
        mainhub.run_soon(self._mark_dirty)
        return self._choice

    @property
    def counters(self) -> list[str] | None:
        return list(self._choice.y) if self._choice.y is not None else None

    @counters.setter
    def counters(self, value: str | Sequence[str] | None) -> None:
        self.select(y=value)

    @property
    def spectrum(self) -> list[str] | None:
        return list(self._choice.spectrum) if self._choice.spectrum is not None else None

    @spectrum.setter
    def spectrum(self, value: str | Sequence[str] | None) -> None:
        self.select(spectrum=value)

    @property
    def shown_scan(self) -> int | None:
        """The scan number shown: the one picked by ``select(scan=...)``, else the newest."""
        models = self.follower.models
        if self._pinned is not None and self._pinned in models:
            return self._pinned
        return max(models) if models else None

    @property
    def pinned(self) -> int | None:
        """The scan the user picked (None: the plot follows the newest)."""
        return self._pinned

    def running_scans(self) -> list[int]:
        """Numbers of the kept scans still running (several when scans overlap)."""
        return [nb for nb, m in self.follower.models.items() if not m.ended]

    def stats(self, scan_nb: int | None = None) -> CurveStats | None:
        """peak, com, cen and fwhm of the plotted curve (the first y, divided by the
        monitor if one is chosen), as BLISS computes them, with the x channel they are
        positions of: of the last drawn frame (live), or the final ones of scan
        ``scan_nb`` once it ended. None before any curve was drawn."""
        if scan_nb is not None:
            return self._final_stats.get(scan_nb)
        return self._last_stats

    def _render(self, frame: Frame) -> bytes | None:
        """In the drawing thread: statistics and the detector frame, then the figure."""
        source = frame.stats_source
        if source is not None:
            frame.stats = curve_stats(source.x, source.y, scan_nb=source.scan_nb,
                                      y_name=source.y_name, x_name=source.x_name,
                                      monitor=source.monitor, ended=source.ended)
        if frame.detector is not None:
            frame.detector.data = self._reader.read(frame.detector.ref)
            if self._reader.error:
                frame.note = "; ".join(n for n in (frame.note, self._reader.error) if n)
        return self.view.render(frame)

    def _after_frame(self, frame: Frame) -> None:
        self.last_frame = frame
        if frame.stats is not None:
            self._last_stats = frame.stats
            if frame.stats.ended:
                self._final_stats[frame.stats.scan_nb] = frame.stats
                while len(self._final_stats) > 100:
                    del self._final_stats[min(self._final_stats)]
        for callback in list(self.on_frame):
            try:
                callback(self)
            except Exception:  # noqa: BLE001 - a control must not stop the drawing
                log.exception("live plot of %r: on_frame callback failed", self.session.name)

    # -- widgets -------------------------------------------------------------------------
    @property
    def controls(self) -> Any:
        """The widget controls (:class:`~.controls.PlotControls`; made on first use),
        or None without a widget (Agg)."""
        if self._controls is None and self.view.widget is not None:
            from beacon_ipy.jupyter.liveplot.controls import PlotControls

            self._controls = PlotControls(self)
        return self._controls

    @property
    def app(self) -> Any:
        """What a notebook shows: the controls above the figure's widget."""
        import ipywidgets

        controls = self.controls
        if controls is None:
            return self.view.widget
        if self._app is None:
            self._app = ipywidgets.VBox([controls.box, self.view.widget])
        return self._app

    def _close_controls(self) -> None:
        if self._controls is not None:
            self._controls.close()
            self._controls = None
        if self._app is not None:
            self._app.close()
            self._app = None
