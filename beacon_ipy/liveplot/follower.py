"""Following a session's scans into bounded buffers: the ingestion side of a live plot.

A :class:`SessionFollower` is a :class:`~beacon_ipy.scans.ScanConsumer` (the project's one
way to consume scans): a ``ScanRunner`` over the session calls ``new_scan``,
``new_stream``, ``new_data`` and ``end_scan``, and the follower copies every block into
a :class:`~beacon_ipy.liveplot.data.ScanModel` (the newest scan and up to ``history``
earlier ones), calling ``on_change()`` after each event. It never draws: the Jupyter
side (:mod:`beacon_ipy.jupyter.liveplot`) draws snapshots (:mod:`beacon_ipy.liveplot.frame`)
at its own pace. The runner owns cursors, reconnection and back-off, dead producers and
deleted scans; if it gives up (Redis gone for longer than its ``reconnect_timeout``, or
a server restarted empty) the follower shows the error and follows the session again,
replaying its newest scan. Points trimmed from Redis before they were read stay holes
in the plot (``ScanModel.lost``), never an error. No Jupyter, no matplotlib.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable
from typing import Any

import gevent
import gevent.event

from beacon_ipy.liveplot.data import ScanModel
from beacon_ipy.scans import ScanConsumer, ScanRunner, SessionNode, StopHandler
from beacon_ipy.scans.bdgaps import data_store, data_url, ensure_initialised

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


_SESSION_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")


def check_session_name(name: str) -> str:
    """``name`` if it is a session name (as BLISS names sessions), else a ValueError."""
    if not isinstance(name, str) or not _SESSION_NAME.match(name):
        raise ValueError(f"invalid session name {name!r}: use 1-100 characters among "
                         f"letters, digits, '_', '.' and '-'")
    return name


class SessionFollower(ScanConsumer):
    """The scans of ``session`` as :class:`ScanModel` buffers, kept up to date live.

    ``models`` maps scan numbers to models (the newest ``history + 1`` scans); ``events``
    counts the consumer calls; ``error`` says what is wrong while the session is lost
    (empty otherwise). ``on_change()`` is called after every event (cheap: mark a plot
    dirty). ``spawn`` starts the greenlets (the Jupyter layer passes one that uses the
    main hub). ``buffer_options``: ``max_points``, ``max_rows``, ``max_cols`` of each model.
    """

    def __init__(self, session: SessionNode | str, *, history: int = 2,
                 buffer_options: dict[str, int] | None = None,
                 on_change: Callable[[], None] = lambda: None,
                 spawn: Spawner = gevent_spawn, redis_url: str | None = None):
        self.session = session
        self.name = check_session_name(session if isinstance(session, str) else session.name)
        self.redis_url = redis_url or getattr(session, "redis_url", None)
        self.history = int(history)
        self.buffer_options = dict(buffer_options or {})
        self.on_change = on_change
        self.spawn = spawn
        self.models: dict[int, ScanModel] = {}
        self.floor = -1  # scans at or below this number were dropped (history bound)
        self.events = 0
        self.error = ""
        self.stopping = gevent.event.Event()
        self._keys: dict[int, str] = {}  # scan number -> blissdata key of its model
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
        """Start following; returns an Event set once the runner listens (scans started
        from then on are seen whole). ``include_last``: also replay the newest scan."""
        self.stopping.clear()
        self._stop_handler = StopHandler()
        started = gevent.event.Event()
        self._walkers = [self.spawn(self._follow, started, include_last,
                                    name=f"liveplot-walk:{self.name}")]
        return started

    def stop(self, timeout: float = 5.0) -> None:
        """Stop following; returns when no greenlet is left (killed after ``timeout``)."""
        self.stopping.set()
        if self._stop_handler is not None:
            self._stop_handler.stop()
        walkers, self._walkers = self._walkers, []
        gevent.joinall(walkers, timeout=timeout)
        gevent.killall([g for g in walkers if not g.dead], timeout=1.0)

    # -- the runners ---------------------------------------------------------------------
    def _follow(self, started: gevent.event.Event, replay: bool) -> None:
        """Run the session's runner; should it give up, show why and start again."""
        backoff = 0.5
        while not self.stopping.is_set():
            listening = gevent.event.Event()
            runner = ScanRunner(self, session=self.name, url=self.redis_url, from_next=True,
                                stop_handler=self._stop_handler, started_event=listening)
            glet = self.spawn(runner.run, name=f"liveplot-runner:{self.name}")
            try:
                gevent.wait([listening, glet], count=1)
                if listening.is_set():
                    if self.error:
                        self.error = ""
                        self.on_change()
                    started.set()
                    if replay:
                        self._replay_last()
                glet.get()
                return  # the runner ends only when stopped
            except Exception as exc:  # noqa: BLE001 - show it, retry, never die silently
                started.set()
                glet.kill()
                log.warning("live plot of %r: following the session failed: %s",
                            self.name, exc)
                self.error = f"lost the session ({exc}); retrying"
                self.on_change()
                with contextlib.suppress(Exception):  # a server restarted empty
                    ensure_initialised(data_url(self.redis_url))
                self.stopping.wait(backoff)
                backoff = min(10.0, backoff * 2)
                replay = True  # back: the last scan may have started or gone on meanwhile

    def _replay_last(self) -> None:
        """Show the session's most recent scan (at start, and after a reconnection), with
        a one-scan runner; data already received are skipped (blocks are index-addressed)."""
        if self.stopping.is_set():
            return
        try:
            _, keys = data_store(self.redis_url).search_existing_scans(session=self.name)
        except Exception as exc:  # noqa: BLE001
            log.warning("live plot of %r: listing its scans failed: %s", self.name, exc)
            return
        if not keys:
            return
        runner = ScanRunner(_Replay(self), scan_key=max(keys), url=self.redis_url,
                            stop_handler=self._stop_handler)
        self._walkers.append(self.spawn(runner.run, name=f"liveplot-last:{self.name}"))

    # -- consumer events ---------------------------------------------------------------
    def new_scan(self, scan: Any) -> bool:
        """The runner announced a new scan.

        Scans are announced once, in creation order, so a number we already know (or one
        below it) for another scan means that Redis lost its data and numbering
        restarted: forget what we had from that number on. The exception: the newest
        scan, found first by the replay of the last scan (both runners then feed one
        model; blocks are index-addressed, so that is harmless).
        """
        self.events += 1
        nb = scan.number
        known = self.models.get(nb)
        if known is not None and self._keys.get(nb) == scan.key:
            known.announced = True  # the replay of the last scan got there first
            return True
        for old in [n for n in self.models if n >= nb]:
            del self.models[old]
        self.floor = min(self.floor, nb - 1)
        model = self._model(scan)
        if model is not None:
            model.announced = True
        self.on_change()
        return True

    def new_stream(self, scan: Any, stream: Any) -> None:
        model = self._model(scan)
        if model is None:
            return
        if not model.channels and not model.images:  # PREPARED: scan_info is complete now
            model.update_info(scan.info)
        model.add_stream(stream)

    def new_data(self, scan: Any, stream: Any, block: Any) -> None:
        self.events += 1
        model = self.models.get(scan.number)
        if model is None or self._keys.get(scan.number) != scan.key:
            return
        model.add_stream(stream)  # (known streams: nothing to do)
        if stream.is_image:
            model.add_image_refs(stream.name, block.start, block.references)
        else:
            model.add_data(stream.name, block.start, block.data)
        self.on_change()

    def end_scan(self, scan: Any, end: Any) -> None:
        self.events += 1
        model = self.models.get(scan.number)
        if model is not None and self._keys.get(scan.number) == scan.key:
            model.end(str(end.reason))
        self.on_change()

    def data_lost(self, scan: Any, stream: Any, error: Any) -> None:
        """Trimmed before it was read: a hole in the plot, noted on the model."""
        model = self.models.get(scan.number)
        if model is not None and self._keys.get(scan.number) == scan.key:
            model.lost.append(str(error))
        log.warning("live plot of %r: %s", self.name, error)

    def _model(self, scan: Any) -> ScanModel | None:
        nb = scan.number
        model = self.models.get(nb)
        if model is not None and self._keys.get(nb) == scan.key:
            return model
        if nb <= self.floor:
            return None
        model = ScanModel(nb, scan.info, **self.buffer_options)
        self.models[nb] = model
        self._keys[nb] = scan.key
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
            self._keys.pop(oldest, None)
            self.floor = max(self.floor, oldest)
        return self.models.get(nb)


class _Replay(ScanConsumer):
    """The last scan's one-scan runner: feeds the follower's model of that scan (unless it
    is already known and ended); never announces it as new."""

    def __init__(self, follower: SessionFollower):
        self.follower = follower

    def new_scan(self, scan: Any) -> bool:
        known = self.follower.models.get(scan.number)
        if known is not None and known.ended:
            return False
        return self.follower._model(scan) is not None

    def new_stream(self, scan: Any, stream: Any) -> None:
        self.follower.new_stream(scan, stream)

    def new_data(self, scan: Any, stream: Any, block: Any) -> None:
        self.follower.new_data(scan, stream, block)

    def end_scan(self, scan: Any, end: Any) -> None:
        self.follower.end_scan(scan, end)

    def data_lost(self, scan: Any, stream: Any, error: Any) -> None:
        self.follower.data_lost(scan, stream, error)
