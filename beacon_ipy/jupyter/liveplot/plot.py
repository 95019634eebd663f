"""Live matplotlib plots of a session's scans: ``LivePlot(session)``.

A :class:`LivePlot` follows a session in background greenlets and shows the newest scan
while it runs: 0d counters against the scan's master axis (earlier scans on the same
axis stay as faded lines, the scan number in each legend entry), the latest spectrum of
a 1d channel with a waterfall of spectra per point, and a 2D map for mesh scans. Title,
axis labels and units come from the scan_info.

How it stays cheap (docs/liveplot.md has the numbers):

* **Ingestion** (a walker greenlet of a :class:`~beacon_ipy.liveplot.follower.SessionFollower`,
  Jupyter-free) only copies each NEW_DATA block into bounded numpy buffers
  (:mod:`beacon_ipy.liveplot.data`) and marks the plot dirty. It never draws.
* **Drawing** (a drawer greenlet) runs at most ``max_rate`` times a second (default 10),
  trailing edge: the last data always lands. It takes a snapshot of the buffers
  (:mod:`beacon_ipy.liveplot.frame`) and renders it in a worker thread of gevent's threadpool,
  so the hub (the kernel's main thread in the beacon kernel) keeps serving greenlets
  during the tens of milliseconds a matplotlib draw takes. When drawing gets slow the
  interval stretches so that drawing uses at most half the time.
* With ipympl the canvas is refreshed by ``canvas.draw()``, which sends the image at
  once, also while a cell runs (``draw_idle()`` would wait for the cell to end).

Plain Python works too (backend ``"agg"``): greenlets run whenever the program waits in
gevent, and :meth:`LivePlot.png` / :meth:`LivePlot.save_png` give snapshots.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gevent
import gevent.event
from gevent.hub import get_hub

from beacon_ipy.jupyter import mainhub
from beacon_ipy.jupyter.liveplot.canvas import choose_backend
from beacon_ipy.jupyter.liveplot.choosing import UNSET, Choosing
from beacon_ipy.jupyter.liveplot.figure import FigureView
from beacon_ipy.liveplot.build import build_frame
from beacon_ipy.liveplot.data import MAX_COLS, MAX_POINTS, MAX_ROWS, ScanModel
from beacon_ipy.liveplot.follower import SessionFollower
from beacon_ipy.liveplot.frame import MAX_DRAW_POINTS, Frame
from beacon_ipy.scans import SessionNode, get_session_node

log = logging.getLogger("beacon_ipy.jupyter.liveplot")

#: Highest redraw rate allowed (each ipympl frame is a PNG over the comm).
MAX_RATE = 10.0
#: How long start() waits for the session walk to take its starting point.
START_TIMEOUT = 10.0
#: Drawing may use at most this fraction of the time (the interval stretches beyond).
DRAW_DUTY = 0.5


class LivePlot(Choosing):
    """Plot the scans of ``session`` live; see the module docstring.

    ``counters``: 0d channels to plot (full names like ``"simu:diode"`` or short ones like
    ``"diode"``; default: the scan's plot-hint signal). ``spectrum``: the 1d channel to
    show (default: the first). ``include_last``: also show the session's most recent scan
    (running or ended) at once, not only scans started from now. ``history``: earlier
    scans kept as faded lines when they share the new scan's x axis. ``backend``:
    ``"auto"`` (ipympl in a kernel if installed, else a PNG image widget; Agg outside a
    kernel), ``"ipympl"``, ``"image"`` or ``"agg"``. ``max_rate``: redraws per second
    (at most 10). ``threaded``: render in gevent's threadpool (keeps the hub responsive).
    """

    def __init__(self, session: str | SessionNode,
                 counters: str | Sequence[str] | None = None, *,
                 x: str | None = UNSET, y: str | Sequence[str] | None = UNSET,
                 log: bool = UNSET, normalize: str | None = UNSET,
                 spectrum: str | Sequence[str] | None = UNSET, remember: bool = True,
                 include_last: bool = True, history: int = 2, backend: str = "auto",
                 figsize: tuple[float, float] = (8.0, 5.5), dpi: float = 80,
                 max_rate: float = MAX_RATE, max_points: int = MAX_POINTS,
                 max_draw_points: int = MAX_DRAW_POINTS, waterfall_rows: int = MAX_ROWS,
                 waterfall_cols: int = MAX_COLS, redis_url: str | None = None,
                 threaded: bool = True, start: bool = True):
        if isinstance(session, SessionNode):
            self.session = session
        elif isinstance(session, str):
            self.session = get_session_node(session, redis_url)  # validates the name
        else:
            raise TypeError(f"session must be a session name or a SessionNode, not {session!r}")
        if not 0 < max_rate <= MAX_RATE:
            raise ValueError(f"max_rate must be in (0, {MAX_RATE:g}] redraws per second, "
                             f"not {max_rate!r}")
        if history < 0:
            raise ValueError(f"history must be >= 0 (earlier scans to keep), not {history!r}")
        if max_draw_points < 4:
            raise ValueError(f"max_draw_points must be >= 4, not {max_draw_points!r}")
        self._init_choice(counters, {"x": x, "y": y, "log": log, "normalize": normalize,
                                     "spectrum": spectrum}, remember)
        self.include_last = bool(include_last)
        self.history = int(history)
        self.max_rate = float(max_rate)
        self.max_draw_points = int(max_draw_points)
        self._buffer_options = {"max_points": int(max_points), "max_rows": int(waterfall_rows),
                                "max_cols": int(waterfall_cols)}
        self.threaded = bool(threaded)
        from beacon_ipy.jupyter import eventloop

        self._kernel = eventloop.current_kernel()
        self.backend = choose_backend(backend, self._kernel is not None)
        self.view = FigureView(self.backend, figsize, dpi, title=f"scans of {self.session.name}")

        self.follower = SessionFollower(self.session, history=self.history,
                                        buffer_options=self._buffer_options,
                                        on_change=self._mark_dirty, spawn=mainhub.spawn)
        self._draw_error = ""
        self.draw_starts: collections.deque[float] = collections.deque(maxlen=2000)
        self.draw_times: collections.deque[float] = collections.deque(maxlen=2000)
        self._full_times: collections.deque[float] = collections.deque(maxlen=2000)
        self._blit_times: collections.deque[float] = collections.deque(maxlen=2000)
        self.shown: dict[str, Any] = {"scan_nb": None, "points": 0, "ended": False}
        self._interval = 1.0 / self.max_rate
        self._last_draw = -float("inf")
        self._dirty = gevent.event.Event()
        self._dirty_flag = False
        self._drawn = gevent.event.Event()
        self._stopping = gevent.event.Event()
        self._drawer: gevent.Greenlet | None = None
        self._closed = False
        #: Called with the plot once it is closed (e.g. to forget it in a registry).
        self.on_close: list[Callable[[LivePlot], None]] = []
        if start:
            self.start()

    # -- public API -----------------------------------------------------------------------
    @property
    def greenlets(self) -> list[gevent.Greenlet]:
        """This plot's live greenlets (empty once stopped)."""
        return [g for g in [*self.follower.walkers, self._drawer]
                if g is not None and not g.dead]

    @property
    def running(self) -> bool:
        return bool(self.greenlets)

    @property
    def error(self) -> str:
        """What is wrong now (the session lost, a drawing failure), or ""."""
        return self.follower.error or self._draw_error

    @property
    def events(self) -> int:
        """Walk events received."""
        return self.follower.events

    @property
    def figure(self):
        """The matplotlib Figure (read it under ``plot.view.lock`` while running)."""
        return self.view.figure

    @property
    def widget(self) -> Any:
        """What a notebook displays: the ipympl canvas or the image widget (None for Agg)."""
        return self.view.widget

    @property
    def models(self) -> dict[int, ScanModel]:
        """The scans kept (the newest and up to ``history`` earlier ones), by number."""
        return dict(self.follower.models)

    def current_model(self) -> ScanModel | None:
        """The newest scan's model (what the plot shows), or None before any scan."""
        return self._current()

    def panel(self, name: str) -> Any:
        """The matplotlib Axes of a panel: ``"curves"``, ``"mesh"``, ``"spectrum"`` or
        ``"waterfall"`` (KeyError if the current layout has no such panel)."""
        with self.view.lock:
            if name not in self.view.axes:
                raise KeyError(f"no {name!r} panel now; the plot shows {list(self.view.axes)}")
            return self.view.axes[name]

    @mainhub.in_main_hub
    def start(self) -> LivePlot:
        """Start following the session (done by the constructor unless ``start=False``).

        Returns once the walk listens: scans started from then on are shown whole.
        """
        if self._closed:
            raise RuntimeError("this LivePlot is closed; create a new one")
        if self.running:
            return self
        self._stopping.clear()
        started = self.follower.start(self.include_last)
        self._drawer = mainhub.spawn(self._draw_loop, name=f"liveplot-draw:{self.session.name}")
        self._warn_if_frozen()
        self._mark_dirty()
        # Scans started once start() has returned are seen from their beginning.
        if not started.wait(START_TIMEOUT):
            log.warning("live plot of %r: the session walk did not start within %g s (%s)",
                        self.session.name, START_TIMEOUT, self.error or "no error yet")
        return self

    @mainhub.in_main_hub
    def stop(self, timeout: float = 5.0) -> None:
        """Stop following; the figure keeps its last frame (drawn with all data received).

        Returns when no greenlet of this plot is left (killed after ``timeout``).
        """
        drawer = self._drawer
        if drawer is None:
            return
        self._stopping.set()
        self.follower.stop(timeout)
        self._mark_dirty()  # the final frame
        drawer.join(timeout)
        if not drawer.dead:
            drawer.kill(timeout=1.0)
        self._drawer = None

    def close(self) -> None:
        """Stop and release the figure and its widget (idempotent)."""
        self.stop()
        if not self._closed:
            self._closed = True
            self._close_controls()
            self.view.close()
            for callback in self.on_close:
                try:
                    callback(self)
                except Exception:  # noqa: BLE001 - the plot is closed anyway
                    log.exception("live plot of %r: on_close callback failed",
                                  self.session.name)

    def wait_drawn(self, scan_nb: int | None = None, *, ended: bool = True,
                   points: int | None = None, timeout: float = 10.0) -> dict[str, Any]:
        """Wait until a frame showing scan ``scan_nb`` (any scan if None) has been drawn,
        once it ended (``ended``) and/or with at least ``points`` points. Returns
        :attr:`shown`; raises ``TimeoutError`` with what is shown otherwise."""
        deadline = time.monotonic() + timeout

        def ok() -> bool:
            s = self.shown
            return (s["scan_nb"] is not None and (scan_nb is None or s["scan_nb"] == scan_nb)
                    and (not ended or s["ended"]) and (points is None or s["points"] >= points))

        while not ok():
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"live plot of {self.session.name!r}: waited {timeout} s "
                                   f"for scan {scan_nb} (ended={ended}, points={points}); "
                                   f"shown: {self.shown}; error: {self.error or 'none'}")
            self._drawn.wait(left)
        return dict(self.shown)

    def png(self) -> bytes:
        """A PNG snapshot of the figure as it is now."""
        return self.view.png()

    def save_png(self, path: str | Path) -> Path:
        """Write a PNG snapshot to ``path``; returns the path."""
        path = Path(path)
        path.write_bytes(self.png())
        return path

    def draw_stats(self) -> dict[str, Any]:
        """Redraw rate and cost, events and memory: what benches and status lines show."""
        now = time.monotonic()
        recent = [t for t in self.draw_starts if now - t <= 5.0]
        rate = (len(recent) - 1) / (recent[-1] - recent[0]) if len(recent) > 2 else 0.0
        times = list(self.draw_times)
        current = self._current()
        return {
            "session": self.session.name, "backend": self.backend, "running": self.running,
            "draws": self.view.frames, "redraw_rate_hz": round(rate, 2),
            "interval_s": round(self._interval, 4),
            "draw_ms_mean": round(1e3 * sum(times) / len(times), 2) if times else None,
            "draw_ms_max": round(1e3 * max(times), 2) if times else None,
            "full_draws": self.view.full_draws,
            "full_draw_ms_mean": _mean_ms(self._full_times),
            "blit_draw_ms_mean": _mean_ms(self._blit_times),
            "events": self.events, "scans": sorted(self.follower.models),
            "scan_nb": current.scan_nb if current else None,
            "points": current.points if current else 0,
            "buffer_bytes": sum(m.nbytes() for m in self.follower.models.values()),
            "frames_read": self._reader.reads,
            "error": self.error,
        }

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return (f"<LivePlot of session {self.session.name!r} ({self.backend}, {state}, "
                f"{self.view.frames} frames)>")

    def _ipython_display_(self) -> None:
        from IPython.display import Image, display

        if self.widget is not None:
            display(self.app)
        else:
            display(Image(self.png()))

    def _mark_dirty(self) -> None:
        if not self._dirty_flag:
            self._dirty_flag = True
            self._dirty.set()

    # -- drawing (drawer greenlet) ---------------------------------------------------------
    def _current(self) -> ScanModel | None:
        nb = self.shown_scan
        return self.follower.models.get(nb) if nb is not None else None

    def _frame(self) -> Frame:
        return build_frame(list(self.follower.models.values()), self.session.name,
                           self._choice, self.history, self.max_draw_points, self.error,
                           shown=self.shown_scan)

    def _draw_loop(self) -> None:
        pool = get_hub().threadpool if self.threaded else None
        while True:
            self._dirty.wait()
            wait = self._last_draw + self._interval - time.monotonic()
            if wait > 0:
                gevent.sleep(wait)  # rate limit (the trailing edge: data keep arriving)
            self._dirty.clear()
            self._dirty_flag = False
            final = self._stopping.is_set()
            start = time.monotonic()
            self._last_draw = start
            try:
                frame = self._frame()
                png = (pool.apply(self._render, (frame,)) if pool is not None
                       else self._render(frame))
                self.view.publish(png)
                self._after_frame(frame)
            except Exception as exc:  # noqa: BLE001 - a bad frame must not end the plot
                log.exception("live plot of %r: drawing failed", self.session.name)
                self._draw_error = f"drawing failed: {exc!r}"
            else:
                self._draw_error = ""
                self.shown = {"scan_nb": frame.scan_nb, "points": frame.points,
                              "ended": frame.ended}
            elapsed = time.monotonic() - start
            self.draw_starts.append(start)
            self.draw_times.append(elapsed)
            (self._full_times if self.view.last_full else self._blit_times).append(elapsed)
            self._interval = max(1.0 / self.max_rate, elapsed / DRAW_DUTY)
            drawn, self._drawn = self._drawn, gevent.event.Event()
            drawn.set()
            if final:
                return

    def _warn_if_frozen(self) -> None:
        """In a stock kernel without the gevent integration nothing updates while idle."""
        if self._kernel is None:
            return
        from beacon_ipy.jupyter import eventloop

        mode = eventloop.kernel_mode(self._kernel)
        if mode == eventloop.STOCK:
            log.warning("live plot of %r: %s", self.session.name, eventloop.limitations(mode))


def _mean_ms(times: Any) -> float | None:
    times = list(times)
    return round(1e3 * sum(times) / len(times), 2) if times else None
