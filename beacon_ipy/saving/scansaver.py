"""Saving one scan: a :class:`ScanWriter` consumer driven by a one-scan ``ScanRunner``.

One :class:`ScanSaver` per scan, each in its own greenlet. An attempt creates the
scan's ``.part`` file and runs ``ScanRunner(writer, scan_key=..., hold_as=<saver>)`` (the
project's one way to consume scans: the runner owns cursors, Redis reconnection, dead
producers and trimmed data, and holds what it has not read yet against the memory
tracker); the :class:`~.writer.ScanWriter` consumer buffers each stream's blocks and writes
them in batches in gevent's threadpool, one batch in flight while the next is read.
When the runner returns after ``end_scan`` the file is finalised and renamed, and the
scan's "saver pending" marker (:mod:`.pending`) is released.

An attempt that fails (disk full, permission, a locked file, Redis gone for longer than
the runner waits) is abandoned and started over from the scan's first point after a
back-off; meanwhile the whole scan is held in Redis (:meth:`ScanSaver.hold_for_retry`).
Points trimmed from Redis before they were read are not an error: the entry is saved,
marked incomplete, and says which points are missing (``ScanWriter.data_lost``).
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gevent
import redis

from beacon_ipy.saving import status as st
from beacon_ipy.saving.blocking import run_blocking
from beacon_ipy.saving.errors import ScanSaveError, describe, is_lock_error
from beacon_ipy.saving.failpoints import failpoint
from beacon_ipy.saving.layout import entry_name
from beacon_ipy.saving.scanfile import ScanFile, read_uid
from beacon_ipy.saving.writer import ScanWriter
from beacon_ipy.scans.bdgaps import data_store
from beacon_ipy.scans.events import EndReason, ScanEnd
from beacon_ipy.scans.runner import ScanRunner

if TYPE_CHECKING:
    from beacon_ipy.saving.saver import SessionSaver

log = logging.getLogger("beacon_ipy.saving")

REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


class Stopped(Exception):
    """The saver is stopping: leave the scan as it is (its marker stays in Redis)."""


class ScanGone(Exception):
    """The scan was deleted from Redis before it ended: it cannot be saved complete."""


class ScanSaver:
    """Saves one scan into its own file (see module docstring)."""

    def __init__(self, owner: SessionSaver, scan_key: str, status: st.ScanStatus,
                 catch_up: bool = False):
        self.owner = owner
        self.key = scan_key
        self.status = status
        self.catch_up = catch_up
        self.runner: ScanRunner | None = None
        self.greenlet: gevent.Greenlet | None = None
        self.retry_held = False
        self.finishing = False  # the saver stops, but this scan has ended: finish it
        self._stopping = False

    # -- lifecycle --------------------------------------------------------------------
    def start(self) -> ScanSaver:
        self.greenlet = gevent.spawn(self.run)
        return self

    @property
    def must_stop(self) -> bool:
        """Stopped by itself, or by the saver unless this scan is being finished."""
        return self._stopping or (self.owner.stopping and not self.finishing)

    def stop(self) -> None:
        self._stopping = True
        runner = self.runner
        if runner is not None:
            runner.stop()

    def run(self) -> None:
        owner = self.owner
        delay = owner.retry_interval[0]
        try:
            while True:
                if self.must_stop:
                    raise Stopped
                try:
                    if self.catch_up:
                        with owner.catch_up_slots:
                            self._attempt()
                    else:
                        self._attempt()
                    return
                except (Stopped, ScanGone):
                    raise
                except Exception as exc:  # noqa: BLE001 - every failure is reported, retried
                    message = self._describe(exc)
                    retry = getattr(exc, "retry", True)
                    self._update(state=st.RETRYING if retry else st.FAILED, error=message,
                                 retries=self.status.retries + 1)
                    log.warning("scan %s: %s", self.status.scan_nb, message,
                                exc_info=not isinstance(exc, OSError | ScanSaveError
                                                        | redis.RedisError))
                    if not retry:
                        return
                    self.hold_for_retry()
                    if owner.wait_stop(delay):
                        raise Stopped from None
                    delay = min(delay * 2, owner.retry_interval[1])
        except Stopped:
            self._update(state=st.STOPPED)
        except ScanGone as exc:
            self.release_retry()
            part = Path(self.status.file + ".part")
            kept = f" What was written is kept in {part}." if part.exists() else ""
            self._update(state=st.FAILED, error=f"{exc} It cannot be saved complete.{kept}",
                         finished=time.time())
            log.error("scan %s: %s", self.status.scan_nb, exc)

    def hold_for_retry(self) -> None:
        """Keep the whole scan in Redis while it waits for a retry (the runner's own hold
        covers only what it has not read yet); refreshed by the saver's housekeeping."""
        owner = self.owner
        try:
            streams = data_store(owner.redis_url).load_scan(self.key).streams
            keys = [s.key for s in streams.values()]
            owner.marks.hold_for_retry(self.key, keys, owner.retry_hold_ttl)
            self.retry_held = True
        except Exception as exc:  # noqa: BLE001 - gone, or Redis away: the retry says so
            log.warning("scan %s: cannot hold it for its retry: %s", self.status.scan_nb, exc)

    def release_retry(self) -> None:
        if self.retry_held:
            self.retry_held = False
            with contextlib.suppress(*REDIS_ERRORS):
                self.owner.marks.release_retry(self.key)

    def _describe(self, exc: BaseException) -> str:
        if isinstance(exc, ScanSaveError):
            return exc.args[0]
        if isinstance(exc, redis.RedisError):
            return (f"scan {self.status.scan_nb}: Redis unreachable for longer than the "
                    f"saver waits ({exc}); its data stays in Redis and saving retries")
        return describe(exc, self.status.file or f"scan {self.status.scan_nb}", "write")

    # -- one attempt ------------------------------------------------------------------
    def _attempt(self) -> None:
        owner, nb = self.owner, self.status.scan_nb
        self._update(state=st.SAVING)
        if not self._exists():
            raise self._gone()  # an earlier attempt's .part is all there is: kept
        owner.redis_call(lambda: owner.marks.mark(self.key))
        final, done = run_blocking(self._choose_file)
        self._update(file=str(final))
        if done:  # saved by an earlier run that died before releasing its marker
            owner.update_master(nb)
            owner.redis_call(lambda: owner.marks.release(self.key))
            self.release_retry()
            self._update(state=st.SAVED, finished=time.time(), error=None)
            return
        sfile = run_blocking(ScanFile, final, scan_nb=nb, entry_name=entry_name(nb),
                             uid=self.key, npoints=self.status.npoints,
                             compression=owner.compression)
        writer = ScanWriter(self, sfile)
        try:
            end, info = self._follow(writer)
            fin = writer.finish(end, info)
            self._update(state=st.FINALIZING, end_reason=str(end.reason))
            run_blocking(sfile.finalize, fin)
        except (Stopped, ScanGone):
            writer.settle()
            run_blocking(sfile.close)  # kept: the next run redoes it, or it is all there is
            raise
        except BaseException as exc:
            writer.settle()
            if isinstance(exc, Exception) and not self._exists():
                run_blocking(sfile.close)  # the scan left Redis: keep what was written
                raise self._gone() from exc
            run_blocking(sfile.abandon)
            raise
        owner.update_master(nb)
        failpoint("before_release", nb)
        owner.redis_call(lambda: owner.marks.release(self.key))
        self.release_retry()
        self._update(state=st.SAVED, finished=time.time(), incomplete=writer.incomplete())
        owner.notify_saved(self.status)

    def _follow(self, writer: ScanWriter) -> tuple[ScanEnd, dict[str, Any]]:
        """Run the scan's runner to its end; the end and the final scan_info."""
        owner = self.owner
        runner = ScanRunner(writer, scan_key=self.key, url=owner.redis_url, from_next=False,
                            reconnect_timeout=owner.reconnect_timeout,
                            hold_as=owner.holder)  # the memory rule: never trim unread
        self.runner = runner
        if self.must_stop:
            raise Stopped
        timer = gevent.spawn(writer.flush_periodically)
        try:
            runner.run()
        finally:
            timer.kill()
            self.runner = None
        writer.raise_error()
        if writer.end is None:
            if self.must_stop:
                raise Stopped
            if not self._exists():
                raise self._gone()
            raise ScanSaveError(f"scan {self.status.scan_nb}: the scan's runner returned "
                                f"before its end; saving retries")
        if writer.end.reason == EndReason.DELETION:
            raise ScanGone(f"scan {self.status.scan_nb} ({self.key}) is no longer in Redis "
                           f"(deleted before it was read to its end, e.g. by a Redis "
                           f"restart without persistence).")
        return writer.end, writer.info

    def _exists(self) -> bool:
        return bool(self.owner.redis_call(lambda: self.owner.marks.client.exists(self.key)))

    def _gone(self) -> ScanGone:
        return ScanGone(f"scan {self.status.scan_nb} ({self.key}) is no longer in Redis "
                        f"(lost by a Redis restart without persistence, or deleted).")

    def _choose_file(self) -> tuple[Path, bool]:
        """``(path, done)``: the final path to write, or the file of this very scan that is
        already there (``done``). Runs in the threadpool."""
        layout, nb = self.owner.layout, self.status.scan_nb
        variant = 1
        while True:
            path = layout.scan_file(nb, variant)
            if not path.exists():
                return path, False
            try:
                existing = read_uid(path)
            except OSError as exc:
                if is_lock_error(exc):
                    raise ScanSaveError(describe(exc, path, "check the saved file")) from exc
                log.warning("%s is not a readable HDF5 file (%s); it is left alone and scan "
                            "%s goes to another file", path, exc, nb)
                existing = None
            if existing == self.key:
                return path, True
            variant += 1

    # -- status -----------------------------------------------------------------------
    def _update(self, **changes: Any) -> None:
        for key, value in changes.items():
            setattr(self.status, key, value)
        self.owner.notify(self.status)
