"""Saving one scan: a :class:`ScanWriter` consumer driven by a one-scan ``ScanRunner``.

One :class:`ScanSaver` per scan, each in its own greenlet. An attempt creates the
scan's ``.part`` file and runs ``ScanRunner(writer, scan_key=...)`` (the project's one
way to consume scans: the runner owns cursors, Redis reconnection, dead producers and
trimming); the :class:`ScanWriter` consumer buffers each stream's blocks and writes
them in batches in gevent's threadpool, one batch in flight while the next is read.
When the runner returns after ``end_scan`` the file is finalised and renamed, and the
scan's "saver pending" marker (:mod:`.pending`) is released.

An attempt that fails (disk full, permission, a locked file, Redis gone for longer than
the runner waits) is abandoned and started over from the scan's first point after a
back-off; the marker keeps the data in Redis meanwhile. Points trimmed from Redis
before they were read are not an error: the entry is saved, marked incomplete, and
says which points are missing (:meth:`ScanWriter.data_lost`).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gevent
import gevent.lock
import numpy as np
import redis

from beacon_ipy.saving import status as st
from beacon_ipy.saving.blocking import run_blocking, spawn_blocking
from beacon_ipy.saving.errors import ScanSaveError, describe, is_lock_error
from beacon_ipy.saving.failpoints import failpoint
from beacon_ipy.saving.layout import entry_name
from beacon_ipy.saving.scanfile import Finalization, ScanFile, read_uid
from beacon_ipy.scans.consumer import ScanConsumer
from beacon_ipy.scans.events import EndReason, ScanEnd
from beacon_ipy.scans.runner import ScanRunner

if TYPE_CHECKING:
    from beacon_ipy.saving.saver import SessionSaver
    from beacon_ipy.scans.errors import ScanDataTrimmedError
    from beacon_ipy.scans.handle import ScanHandle
    from beacon_ipy.scans.streams import StreamDescription

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
        self._stopping = False

    # -- lifecycle --------------------------------------------------------------------
    def start(self) -> ScanSaver:
        self.greenlet = gevent.spawn(self.run)
        return self

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
                if owner.stopping or self._stopping:
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
                    if owner.wait_stop(delay):
                        raise Stopped from None
                    delay = min(delay * 2, owner.retry_interval[1])
        except Stopped:
            self._update(state=st.STOPPED)
        except ScanGone as exc:
            part = Path(self.status.file + ".part")
            kept = f" What was written is kept in {part}." if part.exists() else ""
            self._update(state=st.FAILED, error=f"{exc} It cannot be saved complete.{kept}",
                         finished=time.time())
            log.error("scan %s: %s", self.status.scan_nb, exc)

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
            self._update(state=st.SAVED, finished=time.time(), error=None)
            return
        sfile = run_blocking(ScanFile, final, scan_nb=nb, entry_name=entry_name(nb),
                             uid=self.key, npoints=self.status.npoints)
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
        self._update(state=st.SAVED, finished=time.time(), incomplete=writer.incomplete())
        owner.notify_saved(self.status)

    def _follow(self, writer: ScanWriter) -> tuple[ScanEnd, dict[str, Any]]:
        """Run the scan's runner to its end; the end and the final scan_info."""
        owner = self.owner
        runner = ScanRunner(writer, scan_key=self.key, url=owner.redis_url, from_next=False,
                            reconnect_timeout=owner.reconnect_timeout)
        self.runner = runner
        if self._stopping or owner.stopping:
            raise Stopped
        timer = gevent.spawn(writer.flush_periodically)
        try:
            runner.run()
        finally:
            timer.kill()
            self.runner = None
        writer.raise_error()
        if writer.end is None:
            if self._stopping or owner.stopping:
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


class ScanWriter(ScanConsumer):
    """The consumer of one scan: per-stream buffers, written in batches, one in flight."""

    def __init__(self, saver: ScanSaver, sfile: ScanFile):
        self.saver = saver
        self.sfile = sfile
        self.streams: dict[str, StreamDescription] = {}
        self.have: dict[str, int] = {}
        self.runs: dict[str, list[list]] = {}
        self.lost: dict[str, list[tuple[int, int]]] = {}
        self.notes: list[str] = []
        self.pending_nodes: list[StreamDescription] = []
        self.pending: dict[str, list[tuple[int, np.ndarray]]] = {}
        self.pending_bytes = 0
        self.inflight = None
        self.error: BaseException | None = None
        self.lock = gevent.lock.RLock()
        self.end: ScanEnd | None = None
        self.info: dict[str, Any] = {}

    # -- consumer events ----------------------------------------------------------------
    def new_stream(self, scan: ScanHandle, stream: StreamDescription) -> None:
        if stream.name in self.streams:
            return
        self.streams[stream.name] = stream
        self.have[stream.name] = 0
        if stream.is_image:
            self.runs[stream.name] = []
        else:
            self.pending_nodes.append(stream)
        self.saver.status.channels.setdefault(stream.name, 0)

    def new_data(self, scan: ScanHandle, stream: StreamDescription, block: Any) -> None:
        name = stream.name
        if name not in self.streams:
            self.new_stream(scan, stream)
        have = self.have[name]
        if block.stop <= have:
            return  # delivered again: nothing new
        skip = max(0, have - block.start)
        start = block.start + skip
        if stream.is_image:
            self._add_refs(name, start, block.references[skip:])
            self.saver.status.channels[name] = block.stop
        else:
            arr = block.data[skip:] if skip else block.data
            self.pending.setdefault(name, []).append((start, arr))
            self.pending_bytes += arr.nbytes
        self.have[name] = block.stop
        if self.pending_bytes >= self.saver.owner.flush_bytes:
            self.flush()

    def data_lost(self, scan: ScanHandle, stream: StreamDescription,
                  error: ScanDataTrimmedError) -> None:
        """Trimmed before it was read: the range stays empty (fill value), the entry is
        marked incomplete and says what is missing; the runner goes on after it."""
        name = stream.name
        if name not in self.streams:
            self.new_stream(scan, stream)
        self.lost.setdefault(name, []).append((int(error.start), int(error.stop)))
        self.notes.append(str(error))
        self.have[name] = max(self.have[name], int(error.stop))
        log.error("%s", error)

    def end_scan(self, scan: ScanHandle, end: ScanEnd) -> None:
        self.end = end
        self.info = dict(scan.info)

    def incomplete(self) -> str | None:
        """What the saved entry lacks (trimmed points), in words; None if complete."""
        if not self.lost:
            return None
        parts = [f"{name}: points " + ", ".join(f"{a}..{b - 1}" for a, b in ranges)
                 for name, ranges in self.lost.items()]
        return ("saved INCOMPLETE: data was trimmed from Redis before it was read ("
                + "; ".join(parts) + "); see the entry's saving_notes")

    def _add_refs(self, name: str, pos: int, refs) -> None:
        runs = self.runs[name]
        for ref in refs:
            file, path, index = ref
            last = runs[-1] if runs else None
            if (last is not None and last[1] == file and last[2] == path
                    and last[3] + last[4] == index and last[0] + last[4] == pos):
                last[4] += 1
            else:
                runs.append([pos, file, path, index, 1])
            pos += 1

    # -- writing ----------------------------------------------------------------------
    def flush(self, wait: bool = False) -> None:
        """Hand what is buffered to the threadpool (after the batch in flight is written)."""
        with self.lock:
            self._collect()
            if self.pending_nodes or self.pending:
                ops: list[tuple] = [("node", d) for d in self.pending_nodes]
                for name, parts in self.pending.items():
                    ops.extend(("data", name, start, arr) for start, arr in _coalesce(parts))
                self.pending_nodes, self.pending, self.pending_bytes = [], {}, 0
                self.inflight = spawn_blocking(self.sfile.apply, ops)
            if wait:
                self._collect()

    def _collect(self) -> None:
        inflight = self.inflight
        if inflight is None:
            return
        try:
            counts = inflight.get()  # raises the write's error
        except gevent.GreenletExit:
            raise  # interrupted while it runs: it stays in flight for the next caller
        except BaseException:
            self.inflight = None
            raise
        self.inflight = None
        status = self.saver.status
        for name, n in counts.items():
            status.channels[name] = n
        status.points = max(status.channels.values(), default=0)
        status.bytes_written = self.sfile.bytes_written
        self.saver.owner.notify(status)

    def flush_periodically(self) -> None:
        """Timer greenlet: write what waits for longer than the flush interval; a write
        error stops the scan's runner (``run()`` returns, the attempt raises it)."""
        interval = self.saver.owner.flush_interval
        while True:
            gevent.sleep(interval)
            busy = self.inflight is not None and not self.inflight.ready()
            if busy or not (self.pending or self.pending_nodes or self.inflight):
                continue
            try:
                self.flush()
            except Exception as exc:  # noqa: BLE001 - handed to the attempt (not a kill)
                self.error = exc
                runner = self.saver.runner
                if runner is not None:
                    runner.stop()
                return

    def settle(self) -> None:
        """Wait for the batch in flight, whatever its outcome (before closing the file:
        a thread must not be writing into it)."""
        inflight, self.inflight = self.inflight, None
        if inflight is not None:
            try:
                inflight.get()
            except Exception:  # noqa: BLE001 - the attempt already failed
                pass

    def raise_error(self) -> None:
        if self.error is not None:
            raise self.error

    def finish(self, end: ScanEnd, info: dict[str, Any]) -> Finalization:
        """Write what is buffered; the finalisation of the file."""
        self.flush(wait=True)
        self.raise_error()
        channels = list(self.streams.values())
        lima = {n: [tuple(r) for r in runs] for n, runs in self.runs.items()}
        counts = {n: self.have[n] for n in self.runs}
        status = self.saver.status
        for n in self.runs:
            status.channels[n] = counts[n]
        status.points = max(status.channels.values(), default=0)
        return Finalization(channels, lima, counts, info, end, list(self.notes),
                            {n: list(r) for n, r in self.lost.items()})


def _coalesce(parts: list[tuple[int, np.ndarray]], small: int = 1 << 20):
    """Contiguous ``(start, array)`` parts -> fewer, larger ones: small parts are joined
    (one HDF5 write instead of many), large ones are written as they are (no copy)."""
    out: list[tuple[int, np.ndarray]] = []
    run: list[tuple[int, np.ndarray]] = []

    def close_run():
        if run:
            arr = run[0][1] if len(run) == 1 else np.concatenate([a for _, a in run])
            out.append((run[0][0], arr))
            run.clear()

    for start, arr in parts:
        if arr.nbytes >= small:
            close_run()
            out.append((start, arr))
        elif run and run[-1][0] + len(run[-1][1]) != start:
            close_run()  # a gap (trimmed points) between the two: not contiguous
            run.append((start, arr))
        else:
            run.append((start, arr))
    close_run()
    return out
