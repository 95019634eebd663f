"""``SessionSaver``: save a session's scans to NeXus HDF5 files as they arrive.

::

    from beacon_ipy.saving import SessionSaver
    saver = SessionSaver("demo", "/data/demo").start()   # a background greenlet
    ...
    saver.status()        # SaverStatus: per-scan state, points, file, errors
    saver.stop()

Which scans are saved: every scan started while the saver runs, the scans running when
it starts (from their first point), the scans an earlier saver of the same directory had
not finished (they carry its "saver pending" marker, :mod:`.pending`), and, with
``catch_up=True``, every other scan still in Redis that has no file yet. Scans are
found by a ``ScanRunner`` over the session (the one way to consume scans); each scan is
then saved by its own :class:`~.scansaver.ScanSaver`. A scan's identity is its
blissdata key. Layout and write protocol: docs/saving.md.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import filelock
import gevent
import gevent.event
import gevent.lock
import redis

from beacon_ipy.connection import check_reachable, new_client
from beacon_ipy.saving import status as st
from beacon_ipy.saving.blocking import run_blocking
from beacon_ipy.saving.dirlock import check_directory, release_lock, take_lock
from beacon_ipy.saving.errors import describe
from beacon_ipy.saving.layout import SaveLayout
from beacon_ipy.saving.master import rebuild_master
from beacon_ipy.saving.pending import DEFAULT_TTL, PendingMarks
from beacon_ipy.saving.scanfile import read_uid
from beacon_ipy.saving.scansaver import REDIS_ERRORS, ScanSaver, Stopped
from beacon_ipy.scans import ScanConsumer, ScanHandle, ScanRunner, ScanState
from beacon_ipy.scans.bdgaps import data_store, data_url, ensure_initialised

log = logging.getLogger("beacon_ipy.saving")

T = TypeVar("T")
RETRY_HOLD_TTL = 120.0
"""Seconds a scan waiting for a retry stays held without a refresh (a dead saver lets go)."""
COMPRESSIONS = (None, "gzip", "lzf")
"""Filters for the streamed datasets (with HDF5's shuffle): ``None`` (the default: fastest,
largest files), ``"gzip"`` (what blisswriter uses for datasets above 1 MB), ``"lzf"``
(faster, less compact; readable only where h5py's lzf filter is installed)."""
RECONNECT_TIMEOUT = float("inf")
"""The saver's runners wait for Redis as long as it takes (a saver outlives outages)."""


class SessionSaver:
    """Saves the scans of ``session`` into ``directory`` (see the module docstring).

    ``on_progress(scan_status)`` is called (in the saver's greenlets) whenever a scan's
    status changes: state, points written, errors. Keep it short; it must not block.
    ``flush_bytes``/``flush_interval``: a channel's buffered points are written when
    they reach that size or age. ``retry_interval``: first and longest wait between
    attempts at a scan that failed (it doubles each time). ``pending_ttl``: how long a
    "saver pending" marker protects a scan the saver has not finished (:mod:`.pending`).
    ``max_catch_up``: scans saved at once that had ended before the saver met them.
    ``compression``: the streamed datasets' filter, one of :data:`COMPRESSIONS` (values,
    shapes and layout are the same either way).
    """

    def __init__(self, session: str | Any, directory: str | os.PathLike, *,
                 redis_url: str | None = None, catch_up: bool = False,
                 on_progress: Callable[[st.ScanStatus], None] | None = None,
                 flush_bytes: int = 8 << 20, flush_interval: float = 0.5,
                 retry_interval: tuple[float, float] = (1.0, 30.0),
                 pending_ttl: float = DEFAULT_TTL, max_catch_up: int = 2,
                 reconnect_timeout: float = RECONNECT_TIMEOUT,
                 compression: str | None = None):
        name = session if isinstance(session, str) else getattr(session, "name", None)
        if not isinstance(name, str) or not name:
            raise TypeError(f"session must be a session name, not {session!r}")
        if redis_url is None and not isinstance(session, str):
            redis_url = getattr(session, "redis_url", None)
        if compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {', '.join(map(repr, COMPRESSIONS))}"
                             f", not {compression!r}")
        self.compression = compression
        self.session_name = name
        self.redis_url = data_url(redis_url)
        self.layout = SaveLayout(Path(directory), name)
        self.holder = self.layout.holder
        self.catch_up = bool(catch_up)
        self.on_progress = on_progress
        self.flush_bytes = int(flush_bytes)
        self.flush_interval = float(flush_interval)
        self.retry_interval = (float(retry_interval[0]), float(retry_interval[1]))
        self.reconnect_timeout = float(reconnect_timeout)
        self.retry_hold_ttl = RETRY_HOLD_TTL
        self.catch_up_slots = gevent.lock.BoundedSemaphore(max(1, int(max_catch_up)))
        self.stopping = False
        self._status = st.SaverStatus(name, str(self.layout.directory),
                                      str(self.layout.master))
        self._stop_event = gevent.event.Event()
        self._stopped_event = gevent.event.Event()
        self._ready = gevent.event.Event()
        self._runner: ScanRunner | None = None
        self._savers: dict[str, ScanSaver] = {}
        self._existing: set[str] | None = None  # scan keys in Redis when the saver started
        self._running_at_start: set[str] = set()
        self._last_seen: str | None = None  # newest scan an earlier saver here took on
        self._prepared = False
        self._failed = False
        self._lock: filelock.BaseFileLock | None = None
        self._greenlet: gevent.Greenlet | None = None
        self._housekeeper: gevent.Greenlet | None = None
        self._master_lock = gevent.lock.RLock()
        self._master_dirty = False
        self._ping = new_client(self.redis_url, socket_connect_timeout=2, socket_timeout=2)
        self.marks = PendingMarks(self._ping, self.holder, pending_ttl)
        self._saved_callbacks: list[Callable[[st.ScanStatus], None]] = []

    # -- public API -------------------------------------------------------------------
    def start(self) -> SessionSaver:
        """Check the directory, take the lock, start saving in background greenlets.

        Raises :class:`DirectoryNotWritableError`, :class:`SaverAlreadyRunningError` or
        ``RedisUnavailableError`` at once, with a message saying what to do.
        """
        if self._greenlet is not None:
            raise RuntimeError("this saver was already started; create a new one")
        self._check_directory()
        self._take_lock()
        try:
            check_reachable(self.redis_url)
        except BaseException:
            self._release_lock()
            raise
        self._status.state = "running"
        self._greenlet = gevent.spawn(self._run)
        self._housekeeper = gevent.spawn(self._housekeeping)
        return self

    def stop(self, timeout: float = 30.0, release_holds: bool = False) -> None:
        """Stop saving. Scans being written keep their "saver pending" marker and their
        ``.part`` file is closed; the next saver of this directory saves them from their
        beginning. Scans that have ended are finished first (within ``timeout``): those the
        saver is finalizing and those whose producer ended them in Redis (STOPPED or
        CLOSED), even if the saver has not read that far yet.
        ``release_holds=True``: also release the markers of the scans not saved (their
        data may then be trimmed from Redis normally).
        """
        if self._greenlet is None or self._stopped_event.is_set():
            return
        if self.stopping:  # stopping from another greenlet already
            self._stopped_event.wait(timeout)
            return
        self.stopping = True
        self._status.state = "stopping"
        self._stop_event.set()
        if self._runner is not None:
            self._runner.stop()
        for saver in list(self._savers.values()):
            if saver.status.state == st.FINALIZING or self._ended_in_redis(saver.key):
                saver.finishing = True  # ended before the stop: finished, not left pending
            else:
                saver.stop()
        greenlets = [g for g in [self._greenlet, self._housekeeper] if g is not None]
        greenlets += [s.greenlet for s in self._savers.values() if s.greenlet is not None]
        gevent.joinall(greenlets, timeout=timeout)
        for g in greenlets:
            if not g.dead:
                g.kill(block=True, timeout=5)
        if release_holds:
            with contextlib.suppress(*REDIS_ERRORS):
                self.marks.forget(self.session_name)
            for key, saver in list(self._savers.items()):
                if saver.status.state != st.SAVED:
                    with contextlib.suppress(*REDIS_ERRORS):
                        self.marks.release(key)
        self._release_lock()
        self._ping.connection_pool.disconnect()
        self._status.state = "failed" if self._failed else "stopped"
        self._stopped_event.set()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until the saver follows the session (scans started from then on are saved)."""
        return self._ready.wait(timeout)

    def wait(self, timeout: float | None = None) -> bool:
        """Block (cooperatively) until the saver has stopped; False on timeout."""
        return self._stopped_event.wait(timeout)

    def status(self) -> st.SaverStatus:
        """A snapshot of the saver's state and of every scan it knows."""
        return self._status.copy()

    def scan_status(self, scan_nb: int) -> st.ScanStatus | None:
        """A copy of scan ``scan_nb``'s status (None if the saver has not met it)."""
        found = self._status.scans.get(int(scan_nb))
        return found.copy() if found is not None else None

    def wait_saved(self, scan_nb: int, timeout: float | None = None) -> st.ScanStatus:
        """Wait until scan ``scan_nb`` is saved or failed (or the saver stopped); return its
        status."""
        deadline = None if timeout is None else time.monotonic() + timeout
        event = gevent.event.Event()

        def wake(_status: st.ScanStatus) -> None:
            event.set()

        self._saved_callbacks.append(wake)
        try:
            while True:
                found = self._status.scans.get(int(scan_nb))
                if found is not None and (found.done or found.state == st.STOPPED):
                    return found.copy()
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(f"scan {scan_nb} not saved within {timeout} s "
                                       f"(status: {found})")
                event.clear()
                event.wait(0.2 if left is None else min(0.2, left))
        finally:
            self._saved_callbacks.remove(wake)

    def __enter__(self) -> SessionSaver:
        return self.start() if self._greenlet is None else self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return (f"<SessionSaver {self.session_name!r} -> {self.layout.directory} "
                f"{self._status.state}>")

    # -- used by ScanSaver ------------------------------------------------------------
    def notify(self, scan_status: st.ScanStatus) -> None:
        if scan_status.done:
            for cb in list(self._saved_callbacks):
                cb(scan_status)
        if self.on_progress is not None:
            try:
                self.on_progress(scan_status)
            except Exception:  # noqa: BLE001 - a display must not stop the saving
                log.exception("on_progress callback failed")

    def notify_saved(self, scan_status: st.ScanStatus) -> None:
        log.info("scan %s saved: %s", scan_status.scan_nb, scan_status.file)

    def _ended_in_redis(self, key: str) -> bool:
        """True if the scan's producer has ended it (STOPPED or CLOSED), even if this
        saver has not read that far yet; False if Redis cannot tell."""
        from blissdata.exceptions import ScanNotFoundError

        try:
            scan = data_store(self.redis_url).load_scan(key)  # no waiting: we are stopping
        except (ScanNotFoundError, *REDIS_ERRORS):
            return False
        return scan.state >= ScanState.STOPPED

    def wait_stop(self, seconds: float) -> bool:
        """Sleep ``seconds`` unless the saver stops first (then True)."""
        return self._stop_event.wait(seconds)

    def wait_for_redis(self) -> None:
        """Wait until Redis answers again (raises Stopped if the saver stops meanwhile)."""
        self._status.redis_connected = False
        delay = 0.05
        while not self.stopping:
            try:
                self._ping.ping()
            except (*REDIS_ERRORS, OSError):
                if self.wait_stop(delay):
                    break
                delay = min(delay * 2, 1.0)
                continue
            self._status.redis_connected = True
            return
        raise Stopped

    def redis_call(self, func: Callable[[], T]) -> T:
        """``func()``, waiting for Redis and retrying while the connection is lost."""
        while True:
            try:
                return func()
            except REDIS_ERRORS:
                self.wait_for_redis()

    def update_master(self, scan_nb: int | None = None) -> None:
        """Rebuild the master file (coalesced: one rebuild covers every request before it)."""
        self._master_dirty = True
        with self._master_lock:
            if not self._master_dirty:
                return
            self._master_dirty = False
            try:
                run_blocking(rebuild_master, self.layout, scan_nb)
            except Exception as exc:  # noqa: BLE001 - retried by the housekeeper
                self._master_dirty = True
                self._error(describe(exc, self.layout.master, "update the master file") +
                            " (the scan files are complete; the master is retried)")

    # -- internals --------------------------------------------------------------------
    def _error(self, message: str) -> None:
        log.warning("%s", message)
        errors = self._status.errors
        errors.append(message)
        del errors[:-50]

    def _check_directory(self) -> None:
        check_directory(self.layout)

    def _take_lock(self) -> None:
        self._lock = take_lock(self.layout)

    def _release_lock(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            release_lock(self.layout, lock)

    def _run(self) -> None:
        """Follow the session with a runner until stopped (the runner itself waits for
        Redis; should it give up, the session is followed again from the scans in it)."""
        try:
            while not self.stopping:
                try:
                    self._prepare()
                    runner = ScanRunner(_Discovery(self), session=self.session_name,
                                        url=self.redis_url, from_next=False,
                                        reconnect_timeout=self.reconnect_timeout,
                                        started_event=self._ready)
                    self._runner = runner
                    if self.stopping:
                        break
                    runner.run()
                except REDIS_ERRORS as exc:
                    log.warning("session %r: Redis connection lost (%s); waiting for it",
                                self.session_name, exc)
                    self.wait_for_redis()
                except redis.ResponseError as exc:
                    # e.g. a server restarted empty: blissdata's index is gone until the
                    # database is initialised again
                    log.warning("session %r: %s; following the session again",
                                self.session_name, exc)
                    with contextlib.suppress(redis.RedisError, RuntimeError):
                        ensure_initialised(self.redis_url)
                    if self.wait_stop(self.retry_interval[0]):
                        break
        except Stopped:
            pass
        except Exception as exc:  # noqa: BLE001 - reported in the status
            self._error(f"the saver stopped on an unexpected error: {exc!r}")
            log.exception("saver of session %r failed", self.session_name)
            self._failed = True
            gevent.spawn(self.stop)

    def _prepare(self) -> None:
        """Note the scans already in Redis (saved only if running, ours, or catch-up);
        repair the master file; report .part files that cannot be completed."""
        if self._existing is None:
            store = data_store(self.redis_url)
            _, keys = store.search_existing_scans(session=self.session_name)
            states = store.get_scans_state(list(keys)) if keys else {}
            self._running_at_start = {k for k, state in states.items()
                                      if state < ScanState.CLOSED}
            self._last_seen = self.marks.last_seen(self.session_name)
            self._existing = set(keys)
            self.update_master()  # repairs a master file left by a crash
            self._report_orphans()
        self._status.redis_connected = True
        self._prepared = True

    def _report_orphans(self) -> None:
        """Name the .part files whose scan is gone from Redis (files read in the
        threadpool; Redis asked from this greenlet: a client belongs to its thread)."""
        for key, path in run_blocking(self._part_files):
            if key is not None and not self._ping.exists(key):
                self._error(f"{path} is left from an earlier run and its scan is no longer "
                            f"in Redis: it cannot be completed (kept for inspection)")

    def _part_files(self) -> list[tuple[str | None, Path]]:
        found = []
        for _nb, path in self.layout.part_files():
            try:
                key = read_uid(path)
            except OSError:
                key = None
            found.append((key, path))
        return found

    def consider(self, scan: ScanHandle) -> None:
        """The runner found ``scan``: save it (in its own ScanSaver) or skip it."""
        key = scan.key
        if key in self._savers:
            return
        if self._existing is not None and key in self._existing:
            # in Redis before we started: saved if running then, created after the last
            # scan an earlier saver of this directory took on, ours to finish, or catch-up
            newer = self._last_seen is not None and key > self._last_seen
            if not (self.catch_up or newer or key in self._running_at_start
                    or scan.state < ScanState.CLOSED
                    or self.redis_call(lambda: self.marks.is_marked(key))):
                return
        catch_up = scan.state == ScanState.CLOSED
        info = scan.info
        status = st.ScanStatus(
            scan_nb=scan.number, name=scan.node_name, title=str(info.get("title", "")),
            npoints=_positive(info.get("npoints")), started=time.time(),
            file=str(self.layout.scan_file(scan.number)), key=key)
        self._status.scans[scan.number] = status
        saver = ScanSaver(self, key, status, catch_up=catch_up)
        self._savers[key] = saver
        self.notify(status)
        with contextlib.suppress(*REDIS_ERRORS):
            if not catch_up:  # protect it from trimming now, before its saver runs
                self.marks.mark(key)
            self.marks.seen(self.session_name, key)
        saver.start()

    def _housekeeping(self) -> None:
        """Retry a master file that failed; refresh the holds of scans waiting for a
        retry; forget old finished scans."""
        next_hold = 0.0
        while not self.wait_stop(1.0):
            if self._master_dirty:
                self.update_master()
            if time.monotonic() >= next_hold:
                next_hold = time.monotonic() + self.retry_hold_ttl / 4
                for saver in list(self._savers.values()):
                    if saver.retry_held and not saver.status.done:
                        saver.hold_for_retry()
            self._prune()

    def _prune(self, keep: int = 1000) -> None:
        done = [uid for uid, s in self._savers.items() if s.status.done]
        for uid in done[:-keep] if len(done) > keep else []:
            saver = self._savers.pop(uid)
            if self._existing is not None:
                self._existing.add(uid)  # not saved again unless ours or catch-up
            if self._status.scans.get(saver.status.scan_nb) is saver.status:
                del self._status.scans[saver.status.scan_nb]


class _Discovery(ScanConsumer):
    """The session runner's consumer: hands each new scan to the saver, reads no data."""

    wants_data = False

    def __init__(self, saver: SessionSaver):
        self.saver = saver

    def new_scan(self, scan: ScanHandle) -> bool:
        self.saver.consider(scan)
        return False


def _positive(value: Any) -> int | None:
    try:
        n = int(value)
    except (TypeError, ValueError):
        return None
    return n if n > 0 else None
