"""``SessionSaver``: save a session's scans to NeXus HDF5 files as they arrive.

::

    from beacon_ipy.saving import SessionSaver
    saver = SessionSaver("demo", "/data/demo").start()   # a background greenlet
    ...
    saver.status()        # SaverStatus: per-scan state, points, file, errors
    saver.stop()

Which scans are saved: every scan started while the saver runs, the scans running when
it starts (from their beginning), the scans an earlier saver of the same directory had
not finished (they are held in Redis for it), and, with ``catch_up=True``, every other
scan still in Redis that has no file yet. The saver holds the session's scans in Redis
(holder ``saver:<hash of the directory>``) and releases each scan once its file is
complete; a saver that is stopped or killed leaves its holds, so the next one finds
the data it needs. Layout and write protocol: docs/saving.md.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import filelock
import gevent
import gevent.event
import gevent.lock

from beacon_ipy.connection import check_reachable, new_client, resolve_url
from beacon_ipy.saving import status as st
from beacon_ipy.saving.blocking import run_blocking
from beacon_ipy.saving.errors import (
    DirectoryNotWritableError,
    SaverAlreadyRunningError,
    describe,
)
from beacon_ipy.saving.layout import SaveLayout
from beacon_ipy.saving.master import rebuild_master
from beacon_ipy.saving.scansaver import REDIS_ERRORS, ScanSaver, Stopped, scan_uid
from beacon_ipy.scans import (
    DEFAULT_HOLD_TTL,
    ScanExpiredError,
    ScanNode,
    SessionNode,
    StopHandler,
    get_session_node,
)

log = logging.getLogger("beacon_ipy.saving")

T = TypeVar("T")
HOLD_REFRESH = 60.0


class SessionSaver:
    """Saves the scans of ``session`` into ``directory`` (see the module docstring).

    ``on_progress(scan_status)`` is called (in the saver's greenlets) whenever a scan's
    status changes: state, points written, errors. Keep it short; it must not block.
    ``flush_bytes``/``flush_interval``: a channel's buffered points are written when
    they reach that size or age. ``retry_interval``: first and longest wait between
    attempts at a scan that failed (it doubles each time). ``read_count``/``read_bytes``:
    most entries per read from Redis, fewer so that a read stays near that size.
    """

    def __init__(self, session: str | SessionNode, directory: str | os.PathLike, *,
                 redis_url: str | None = None, catch_up: bool = False,
                 on_progress: Callable[[st.ScanStatus], None] | None = None,
                 flush_bytes: int = 8 << 20, flush_interval: float = 0.5,
                 retry_interval: tuple[float, float] = (1.0, 30.0),
                 hold_ttl: float = DEFAULT_HOLD_TTL, max_catch_up: int = 2,
                 read_count: int = 1000, read_bytes: int = 4 << 20):
        if isinstance(session, SessionNode):
            self.session = session
        else:
            self.session = get_session_node(session, redis_url)
        self.redis_url = resolve_url(redis_url if redis_url is not None
                                     else self.session.redis_url)
        self.layout = SaveLayout(Path(directory), self.session.name)
        self.holder = self.layout.holder
        self.catch_up = bool(catch_up)
        self.on_progress = on_progress
        self.flush_bytes = int(flush_bytes)
        self.flush_interval = float(flush_interval)
        self.retry_interval = (float(retry_interval[0]), float(retry_interval[1]))
        self.hold_ttl = float(hold_ttl)
        self.read_count = int(read_count)
        self.read_bytes = int(read_bytes)
        self.catch_up_slots = gevent.lock.BoundedSemaphore(max(1, int(max_catch_up)))
        self.stopping = False
        self._status = st.SaverStatus(self.session.name, str(self.layout.directory),
                                      str(self.layout.master))
        self._stop_event = gevent.event.Event()
        self._stopped_event = gevent.event.Event()
        self._ready = gevent.event.Event()
        self._walk_stop = StopHandler()
        self._savers: dict[str, ScanSaver] = {}
        self._skip: set[str] = set()
        self._prepared = False
        self._holds_refreshed = False
        self._failed = False
        self._lock: filelock.BaseFileLock | None = None
        self._greenlet: gevent.Greenlet | None = None
        self._housekeeper: gevent.Greenlet | None = None
        self._master_lock = gevent.lock.RLock()
        self._master_dirty = False
        self._ping = new_client(self.redis_url, socket_connect_timeout=2, socket_timeout=2)
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
        """Stop saving. Scans being written are left held in Redis and their ``.part``
        files closed; the next saver of this directory saves them from their beginning.
        Scans that have ended are finished first (within ``timeout``).
        ``release_holds=True``: stop holding the session's scans for good (scans not
        saved yet then expire from Redis normally).
        """
        if self._greenlet is None or self._stopped_event.is_set():
            return
        if self.stopping:  # stopping from another greenlet already
            self._stopped_event.wait(timeout)
            return
        self.stopping = True
        self._status.state = "stopping"
        self._stop_event.set()
        self._walk_stop.stop()
        for saver in list(self._savers.values()):
            if saver.status.state not in (st.FINALIZING,):
                saver.stop()
        greenlets = [g for g in [self._greenlet, self._housekeeper] if g is not None]
        greenlets += [s.greenlet for s in self._savers.values() if s.greenlet is not None]
        gevent.joinall(greenlets, timeout=timeout)
        for g in greenlets:
            if not g.dead:
                g.kill(block=True, timeout=5)
        if release_holds:
            with contextlib.suppress(*REDIS_ERRORS):
                self.session.release(self.holder, include_scans=True)
        self._release_lock()
        self._ping.connection_pool.disconnect()
        self._status.state = "failed" if self._failed else "stopped"
        self._stopped_event.set()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until the saver holds the session (scans started from then on are safe)."""
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
        return (f"<SessionSaver {self.session.name!r} -> {self.layout.directory} "
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
        layout = self.layout
        probe = layout.scans_dir / f".write-test-{os.getpid()}-{id(self)}"
        try:
            layout.scans_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise DirectoryNotWritableError(
                f"cannot save session {self.session.name!r} into {layout.directory}: "
                f"{exc.strerror or exc} ({exc.filename or layout.scans_dir}). Choose a "
                f"directory you can write to, or fix its permissions.") from exc

    def _take_lock(self) -> None:
        layout = self.layout
        lock = filelock.FileLock(str(layout.lock_file), timeout=0)
        try:
            lock.acquire()
        except filelock.Timeout:
            owner = ""
            with contextlib.suppress(OSError, ValueError):
                info = json.loads(layout.owner_file.read_text())
                owner = (f" (pid {info.get('pid')} on {info.get('host')}, since "
                         f"{info.get('since')})")
            raise SaverAlreadyRunningError(
                f"session {self.session.name!r} is already being saved into "
                f"{layout.directory} by another saver{owner}. Stop that one first, or save "
                f"into another directory.") from None
        self._lock = lock
        with contextlib.suppress(OSError):
            layout.owner_file.write_text(json.dumps({
                "pid": os.getpid(), "host": socket.gethostname(),
                "since": time.strftime("%Y-%m-%d %H:%M:%S")}))

    def _release_lock(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            with contextlib.suppress(OSError):
                self.layout.owner_file.unlink()
            lock.release()

    def _run(self) -> None:
        try:
            while not self.stopping:
                try:
                    self._prepare()
                    for event_type, node, _ in self.session.walk_on_new_events(
                            include_filter="scan", from_next=False,
                            stop_handler=self._walk_stop):
                        if event_type == "NEW_NODE":
                            self._consider(node)
                except REDIS_ERRORS as exc:
                    log.warning("session %r: Redis connection lost (%s); waiting for it",
                                self.session.name, exc)
                    self.wait_for_redis()
        except Stopped:
            pass
        except Exception as exc:  # noqa: BLE001 - reported in the status
            self._error(f"the saver stopped on an unexpected error: {exc!r}")
            log.exception("saver of session %r failed", self.session.name)
            self._failed = True
            gevent.spawn(self.stop)

    def _prepare(self) -> None:
        """Decide which scans already in Redis to save; hold the session; repair files."""
        session = self.session
        if not self._prepared:
            for scan in session.scans():
                try:
                    uid = scan_uid(scan)
                    keep = (self.catch_up or scan.state == "RUNNING"
                            or self.holder in scan.holds())
                except ScanExpiredError:
                    continue
                if not keep:
                    self._skip.add(uid)
            self.update_master()  # repairs a master file left by a crash
            self._report_orphans()
        self._refresh_holds()
        self._status.redis_connected = True
        self._prepared = True
        self._ready.set()

    def _refresh_holds(self) -> None:
        """Hold the session (new scans get our hold as they start), then drop the hold
        that this also put on every existing scan we do not need (saved, or skipped).

        Done at start, after a reconnection, and every HOLD_REFRESH seconds (which also
        restores the hold after a Redis restart that lost it). Only the first call holds
        existing scans; later ones refresh the session-level hold alone (scans being
        saved are held by their own ScanSaver), so saved scans are not held again.
        """
        first = not self._holds_refreshed
        self._holds_refreshed = True
        self.session.hold(self.holder, self.hold_ttl, existing=first)
        if not first:
            return
        for scan in self.session.scans():
            try:
                uid = scan_uid(scan)
            except ScanExpiredError:
                continue
            saver = self._savers.get(uid)
            if uid in self._skip or (saver is not None and saver.status.state == st.SAVED):
                with contextlib.suppress(ScanExpiredError):
                    scan.release(self.holder)

    def _report_orphans(self) -> None:
        in_redis = set(self.session.scan_numbers())
        for nb, path in self.layout.part_files():
            if nb not in in_redis:
                self._error(f"{path} is left from an earlier run and scan {nb} is no longer "
                            f"in Redis: it cannot be completed (kept for inspection)")

    def _consider(self, scan: ScanNode) -> None:
        try:
            uid = scan_uid(scan)
            info = scan.info
        except ScanExpiredError:
            return
        if uid in self._skip or uid in self._savers:
            return
        catch_up = scan.end is not None
        status = st.ScanStatus(
            scan_nb=scan.scan_nb, name=scan.name, title=str(info.get("title", "")),
            npoints=_positive(info.get("npoints")), started=time.time(),
            file=str(self.layout.scan_file(scan.scan_nb)))
        self._status.scans[scan.scan_nb] = status
        saver = ScanSaver(self, scan, status, uid, catch_up=catch_up)
        self._savers[uid] = saver
        self.notify(status)
        saver.start()

    def _housekeeping(self) -> None:
        """Refresh the session hold now and then; retry a master file that failed."""
        next_hold = time.monotonic() + min(HOLD_REFRESH, self.hold_ttl / 4)
        while not self.wait_stop(1.0):
            if self._master_dirty:
                self.update_master()
            if time.monotonic() >= next_hold and self._prepared:
                with contextlib.suppress(*REDIS_ERRORS):
                    self._refresh_holds()
                    next_hold = time.monotonic() + min(HOLD_REFRESH, self.hold_ttl / 4)
            self._prune()

    def _prune(self, keep: int = 1000) -> None:
        done = [uid for uid, s in self._savers.items() if s.status.done]
        for uid in done[:-keep] if len(done) > keep else []:
            saver = self._savers.pop(uid)
            self._skip.add(uid)
            if self._status.scans.get(saver.status.scan_nb) is saver.status:
                del self._status.scans[saver.status.scan_nb]


def _positive(value: Any) -> int | None:
    try:
        n = int(value)
    except (TypeError, ValueError):
        return None
    return n if n > 0 else None
