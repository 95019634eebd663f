"""Following a session's scans into bounded buffers: the ingestion side of a live plot.

A :class:`SessionFollower` walks a session (``walk_on_new_events``) in a walker greenlet
and copies every NEW_DATA block into a :class:`~beacon_ipy.liveplot.data.ScanModel` (the
newest scan and up to ``history`` earlier ones), calling ``on_change()`` after each
event. It never draws: the Jupyter side (:mod:`beacon_ipy.jupyter.liveplot`) draws
snapshots (:mod:`beacon_ipy.liveplot.frame`) at its own pace. It survives a lost Redis
(retries with back-off, and replays the newest scan once back) and a numbering restart
(Redis lost its data). No Jupyter, no matplotlib.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import gevent
import gevent.event

from beacon_ipy.liveplot.data import ScanModel
from beacon_ipy.scans import SessionNode, StopHandler
from beacon_ipy.scans.errors import ScanExpiredError

log = logging.getLogger("beacon_ipy.liveplot")

#: Running scans kept beyond ``history + 1`` (scans that overlap in time).
MAX_RUNNING = 4
#: How a follower starts its greenlets: ``spawn(func, *args, name=...)``.
Spawner = Callable[..., gevent.Greenlet]


def gevent_spawn(func: Callable[..., Any], *args: Any, name: str | None = None) -> gevent.Greenlet:
    """The default :data:`Spawner`: ``gevent.spawn`` in the calling thread's hub."""
    greenlet = gevent.spawn(func, *args)
    if name:
        greenlet.name = name
    return greenlet


class SessionFollower:
    """The scans of ``session`` as :class:`ScanModel` buffers, kept up to date live.

    ``models`` maps scan numbers to models (the newest ``history + 1`` scans); ``events``
    counts the walk events; ``error`` says what is wrong while the session is lost (empty
    otherwise). ``on_change()`` is called after every event (cheap: mark a plot dirty).
    ``spawn`` starts the greenlets (the Jupyter layer passes one that uses the main hub).
    ``buffer_options``: ``max_points``, ``max_rows``, ``max_cols`` of each model.
    """

    def __init__(self, session: SessionNode, *, history: int = 2,
                 buffer_options: dict[str, int] | None = None,
                 on_change: Callable[[], None] = lambda: None,
                 spawn: Spawner = gevent_spawn):
        self.session = session
        self.history = int(history)
        self.buffer_options = dict(buffer_options or {})
        self.on_change = on_change
        self.spawn = spawn
        self.models: dict[int, ScanModel] = {}
        self.floor = -1  # scans at or below this number were dropped (history bound)
        self.events = 0
        self.error = ""
        self.stopping = gevent.event.Event()
        self._stop_handler: StopHandler | None = None
        self._walkers: list[gevent.Greenlet] = []

    @property
    def walkers(self) -> list[gevent.Greenlet]:
        """The follower's live greenlets (empty once stopped)."""
        return [g for g in self._walkers if not g.dead]

    def current(self) -> ScanModel | None:
        """The newest scan's model, or None before any scan."""
        return self.models[max(self.models)] if self.models else None

    def start(self, include_last: bool = True) -> gevent.event.Event:
        """Start walking; returns an Event set once the walk listens (scans started from
        then on are seen whole). ``include_last``: also replay the newest scan."""
        self.stopping.clear()
        self._stop_handler = StopHandler()
        started = gevent.event.Event()
        name = self.session.name
        self._walkers = [self.spawn(self._follow, started, name=f"liveplot-walk:{name}")]
        if include_last:
            self._walkers.append(self.spawn(self._replay_last, started,
                                            name=f"liveplot-last:{name}"))
        return started

    def stop(self, timeout: float = 5.0) -> None:
        """Stop walking; returns when no walker is left (killed after ``timeout``)."""
        self.stopping.set()
        if self._stop_handler is not None:
            self._stop_handler.stop()
        walkers, self._walkers = self._walkers, []
        gevent.joinall(walkers, timeout=timeout)
        gevent.killall([g for g in walkers if not g.dead], timeout=1.0)

    def _follow(self, started: gevent.event.Event) -> None:
        backoff = 0.5
        while not self.stopping.is_set():
            try:
                walk = self.session.walk_on_new_events(
                    include_filter=("scan", "channel", "lima"), from_next=True,
                    stop_handler=self._stop_handler, started_event=_Started(self, started))
                for event in walk:
                    self._ingest(*event)
                    backoff = 0.5
                return  # the walk ends only when stopped
            except Exception as exc:  # noqa: BLE001 - show it, retry, never die silently
                started.set()
                log.warning("live plot of %r: following the session failed: %s",
                            self.session.name, exc)
                self.error = f"lost the session ({exc}); retrying"
                self.on_change()
                self.stopping.wait(backoff)
                backoff = min(10.0, backoff * 2)

    def _replay_last(self, started: gevent.event.Event) -> None:
        """Show the session's most recent scan (at start, and after a reconnection).

        Data already received are skipped (blocks are index-addressed)."""
        if not started.wait(30.0) or self.stopping.is_set():
            return
        try:
            numbers = self.session.scan_numbers()
            known = self.models.get(numbers[-1]) if numbers else None
            if not numbers or (known is not None and known.ended):
                return
            scan = self.session.get_scan(numbers[-1])
            if self._model(scan) is None:
                return
            for event in scan.walk_events(stop_handler=self._stop_handler):
                self._ingest(*event)
        except ScanExpiredError:
            return
        except Exception as exc:  # noqa: BLE001
            log.warning("live plot of %r: replaying the last scan failed: %s",
                        self.session.name, exc)

    def _model(self, scan: Any) -> ScanModel | None:
        nb = scan.scan_nb
        model = self.models.get(nb)
        if model is not None or nb <= self.floor:
            return model
        try:
            info = scan.info
        except ScanExpiredError:
            return None
        model = ScanModel(nb, info, **self.buffer_options)
        self.models[nb] = model
        if len(self.models) > 1 and nb < max(self.models):
            self.models = dict(sorted(self.models.items()))
        while len(self.models) > self.history + 1:
            # the oldest ended scan goes; running ones (concurrent scans) stay, up to
            # MAX_RUNNING beyond the bound
            ended = [n for n, m in self.models.items() if m.ended and n != nb]
            if not ended and len(self.models) <= self.history + 1 + MAX_RUNNING:
                break
            oldest = ended[0] if ended else next(iter(self.models))
            del self.models[oldest]
            self.floor = max(self.floor, oldest)
        return self.models.get(nb)

    def _announced(self, scan: Any) -> None:
        """The session walk announced a new scan.

        Scans are announced once, in start order, so a number we already know (or one
        below it) means that Redis lost its data and numbering restarted: forget what we
        had from that number on. The walk delivers the new scan's data from its start.
        The exception: the newest scan, found first by :meth:`_replay_last` (both walks
        then feed one model; blocks are index-addressed, so that is harmless).
        """
        nb = scan.scan_nb
        known = self.models.get(nb)
        if known is not None and not known.announced and nb == max(self.models):
            known.announced = True  # the replay of the last scan got there first
            return
        for old in [n for n in self.models if n >= nb]:
            del self.models[old]
        self.floor = min(self.floor, nb - 1)
        model = self._model(scan)
        if model is not None:
            model.announced = True

    def _ingest(self, event_type: str, node: Any, data: Any) -> None:
        """One walk event into the buffers: cheap, never draws."""
        self.events += 1
        kind = node.type
        if event_type == "NEW_DATA":
            if kind not in ("channel", "lima"):
                return
            model = self.models.get(node.scan.scan_nb) or self._model(node.scan)
            if model is None:
                return
            if kind == "lima":
                model.add_image(node.name, node.shape, node.unit, node.info)
                model.add_image_refs(node.name, data.start, data.references)
            else:
                if node.name not in model.channels:
                    model.add_channel(node.name, node.shape, node.unit, node.info)
                model.add_data(node.name, data.start, data.data)
        elif event_type == "NEW_NODE":
            if kind == "scan":
                self._announced(node)
            elif kind == "channel":
                model = self._model(node.scan)
                if model is not None:
                    model.add_channel(node.name, node.shape, node.unit, node.info)
            elif kind == "lima":
                model = self._model(node.scan)
                if model is not None:
                    model.add_image(node.name, node.shape, node.unit, node.info)
        elif event_type == "END_SCAN":
            model = self.models.get(node.scan_nb)
            if model is not None:
                model.end(data.reason)
        self.on_change()


class _Started:
    """The walk's ``started_event``: (re)connected, so any shown error is over."""

    def __init__(self, follower: SessionFollower, event: gevent.event.Event):
        self.follower, self.event = follower, event

    def set(self) -> None:
        follower = self.follower
        if follower.error and not follower.stopping.is_set():
            follower.error = ""
            follower.on_change()
            # Back after a failure: the last scan may have started or gone on meanwhile.
            replay = follower.spawn(follower._replay_last, self.event,
                                    name=f"liveplot-last:{follower.session.name}")
            follower._walkers = [g for g in follower._walkers if not g.dead] + [replay]
        self.event.set()
