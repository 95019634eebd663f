"""Saving one scan: walk its events, write batches off the hub, finalise, release its hold.

One :class:`ScanSaver` per scan, each in its own greenlet. Points are index-addressed,
so whatever is delivered twice (a walk resumed after a Redis reconnection) is written
once; a gap (points never delivered) is filled by reading the channel from Redis.
Writes are batched per channel and double-buffered: one batch is written in the
threadpool while the next one is read from Redis. An attempt that fails (disk full,
permission, a locked file) is abandoned and started over from the scan's beginning
after a back-off; the scan stays held in Redis until its file is complete.
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

from beacon_ipy.connection import get_redis
from beacon_ipy.saving import status as st
from beacon_ipy.saving.blocking import run_blocking, spawn_blocking
from beacon_ipy.saving.errors import ScanSaveError, describe, is_lock_error
from beacon_ipy.saving.failpoints import failpoint
from beacon_ipy.saving.layout import entry_name
from beacon_ipy.saving.nexus import ChannelDecl
from beacon_ipy.saving.scanfile import Finalization, ScanFile, read_uid
from beacon_ipy.scans import ScanEnd, ScanExpiredError, ScanNode, StopHandler

if TYPE_CHECKING:
    from beacon_ipy.saving.saver import SessionSaver

log = logging.getLogger("beacon_ipy.saving")

REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
FIRST_READ_COUNT = 16  # entries in the first read of a scan, before their size is known


class Stopped(Exception):
    """The saver is stopping: leave the scan as it is (still held in Redis)."""


def scan_uid(scan: ScanNode) -> str:
    """Identity of a scan, stable across savers and restarts (not just its number)."""
    return f"{scan.session}/{scan.scan_nb}/{scan.uid}"


class ScanSaver:
    """Saves one scan into its own file (see module docstring)."""

    def __init__(self, owner: SessionSaver, scan: ScanNode, status: st.ScanStatus,
                 uid: str, catch_up: bool = False):
        self.owner = owner
        self.scan = scan
        self.status = status
        self.uid = uid
        self.catch_up = catch_up
        self.stop_handler = StopHandler()
        self.greenlet: gevent.Greenlet | None = None

    # -- lifecycle --------------------------------------------------------------------
    def start(self) -> ScanSaver:
        self.greenlet = gevent.spawn(self.run)
        return self

    def stop(self) -> None:
        self.stop_handler.stop()

    def run(self) -> None:
        owner = self.owner
        delay = owner.retry_interval[0]
        try:
            while True:
                if owner.stopping:
                    raise Stopped
                try:
                    if self.catch_up:
                        with owner.catch_up_slots:
                            self._attempt()
                    else:
                        self._attempt()
                    return
                except (Stopped, ScanExpiredError):
                    raise
                except Exception as exc:  # noqa: BLE001 - every failure is reported, retried
                    message = exc.args[0] if isinstance(exc, ScanSaveError) else describe(
                        exc, self.status.file or f"scan {self.scan.scan_nb}", "write")
                    retry = getattr(exc, "retry", True)
                    self._update(state=st.RETRYING if retry else st.FAILED, error=message,
                                 retries=self.status.retries + 1)
                    log.warning("scan %s: %s", self.scan.scan_nb, message,
                                exc_info=not isinstance(exc, OSError | ScanSaveError))
                    if not retry:
                        return
                    self.stop_handler = StopHandler()
                    if owner.wait_stop(delay):
                        raise Stopped from None
                    delay = min(delay * 2, owner.retry_interval[1])
        except Stopped:
            self._update(state=st.STOPPED)
        except ScanExpiredError as exc:
            part = Path(self.status.file + ".part")
            kept = f" What was written is kept in {part}." if part.exists() else ""
            self._update(state=st.FAILED, error=f"{exc} It cannot be saved complete.{kept}",
                         finished=time.time())
            log.error("scan %s: %s", self.scan.scan_nb, exc)

    # -- one attempt ------------------------------------------------------------------
    def _attempt(self) -> None:
        owner, scan, nb = self.owner, self.scan, self.scan.scan_nb
        self._update(state=st.SAVING)
        info = owner.redis_call(lambda: scan.info)
        owner.redis_call(lambda: scan.hold(owner.holder, owner.hold_ttl))
        final, done = run_blocking(self._choose_file)
        if done:  # saved by an earlier run that died before releasing the hold
            self._update(file=str(final))
            owner.update_master(nb)
            owner.redis_call(lambda: scan.release(owner.holder))
            self._update(state=st.SAVED, finished=time.time(), error=None)
            return
        self._update(file=str(final))
        sfile = run_blocking(ScanFile, final, scan_nb=nb, entry_name=entry_name(nb),
                             uid=self.uid, scan_info=info)
        writer = _BatchWriter(self, sfile)
        try:
            end = self._walk(writer)
            fin = writer.finish(end, info)
            self._update(state=st.FINALIZING, end_reason=end.reason)
            run_blocking(sfile.finalize, fin)
        except (Stopped, ScanExpiredError):
            run_blocking(sfile.close)  # kept: the next run redoes it, or it is all there is
            raise
        except BaseException:
            run_blocking(sfile.abandon)
            raise
        self._update(file=str(final))
        owner.update_master(nb)
        failpoint("before_release", nb)
        owner.redis_call(lambda: scan.release(owner.holder))
        self._update(state=st.SAVED, finished=time.time())
        owner.notify_saved(self.status)

    def _choose_file(self) -> tuple[Path, bool]:
        """``(path, done)``: the final path to write, or the file of this very scan that is
        already there (``done``). Runs in the threadpool."""
        layout, nb = self.owner.layout, self.scan.scan_nb
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
            if existing == self.uid:
                return path, True
            variant += 1

    def _walk(self, writer: _BatchWriter) -> ScanEnd:
        """Follow the scan to its END_SCAN, resuming after Redis disconnections.

        Reads are kept near ``owner.read_bytes`` (bounded memory, and no long stall of
        the hub decoding one huge reply): the first read takes few entries; at the
        first data, the size of a stream entry is sampled and the walk goes on with a
        COUNT that fits; a batch that still comes out much bigger lowers it again.
        What a restarted walk delivers twice is skipped by index.
        """
        cursor: str | None = None
        count, calibrated = FIRST_READ_COUNT, False
        limit = self.owner.read_bytes
        timer = gevent.spawn(writer.flush_periodically)
        try:
            while True:
                batch, batch_bytes, restart = None, 0, False
                try:
                    for event_type, node, data in self.scan.walk_events(
                            after=cursor, stop_handler=self.stop_handler, count=count):
                        if data.cursor != batch:  # a new XREAD batch starts
                            batch, batch_bytes = data.cursor, 0
                        cursor = data.cursor
                        if event_type == "NEW_NODE":
                            writer.add_node(node)
                        elif event_type == "NEW_DATA":
                            batch_bytes += writer.add_data(node, data)
                            if not calibrated:
                                calibrated = True
                                fit = self._fitting_count(limit)
                                if fit != count:
                                    count, restart = fit, True
                                    break
                            elif batch_bytes > 1.5 * limit and count > 1:
                                count = max(1, int(count * limit / batch_bytes))
                                restart = True
                                break
                        elif event_type == "END_SCAN":
                            return data
                except REDIS_ERRORS as exc:
                    log.warning("scan %s: Redis connection lost (%s); resuming when it is "
                                "back", self.scan.scan_nb, exc)
                    self.owner.wait_for_redis()
                    continue
                if restart:
                    continue
                writer.raise_error()
                if self.owner.stopping:
                    raise Stopped
                # the walk ended without END_SCAN and without a stop: resume it
        finally:
            timer.kill()

    def _fitting_count(self, limit: int) -> int:
        """Entries per read so that a read is about ``limit`` bytes (sampled on the last
        entry of the scan's stream)."""
        try:
            last = get_redis(self.owner.redis_url).xrevrange(self.scan.keys.data, count=1)
        except REDIS_ERRORS:
            return FIRST_READ_COUNT
        size = sum(len(k) + len(v) for _, fields in last for k, v in fields.items()) or 1
        return max(1, min(self.owner.read_count, limit // size))

    # -- status -----------------------------------------------------------------------
    def _update(self, **changes: Any) -> None:
        for key, value in changes.items():
            setattr(self.status, key, value)
        self.owner.notify(self.status)


class _BatchWriter:
    """Per-channel buffers of one scan, written in batches, one batch in flight."""

    def __init__(self, saver: ScanSaver, sfile: ScanFile):
        self.saver = saver
        self.sfile = sfile
        self.decls: dict[int, ChannelDecl] = {}
        self.nodes: dict[int, Any] = {}
        self.have: dict[int, int] = {}
        self.runs: dict[int, list[list]] = {}
        self.pending_nodes: list[ChannelDecl] = []
        self.pending: dict[int, list[tuple[int, np.ndarray]]] = {}
        self.pending_bytes = 0
        self.inflight = None
        self.error: BaseException | None = None
        self.lock = gevent.lock.RLock()
        self.last_flush = time.monotonic()

    # -- events -----------------------------------------------------------------------
    def add_node(self, node) -> None:
        if node.idx in self.decls:
            return
        decl = ChannelDecl(node.idx, node.name, node.type, np.dtype(node.dtype),
                           tuple(node.shape), node.unit, dict(node.info))
        self.decls[node.idx] = decl
        self.nodes[node.idx] = node
        self.have[node.idx] = 0
        if node.type == "lima":
            self.runs[node.idx] = []
        else:
            self.pending_nodes.append(decl)
        self.saver.status.channels.setdefault(node.name, 0)

    def add_data(self, node, data) -> int:
        """Buffer a NEW_DATA event (what was not delivered before); return its size."""
        idx = node.idx
        if idx not in self.decls:
            self.add_node(node)
        size = data.data.nbytes if node.type != "lima" else 64 * len(data)
        have = self.have[idx]
        if data.stop <= have:
            return size  # delivered again after a resumed walk
        if data.start > have:  # points never delivered: read them from Redis
            self._fill(node, have, data.start)
            have = self.have[idx]
        skip = have - data.start
        if node.type == "lima":
            self._add_refs(idx, have, data.references[skip:])
            self.saver.status.channels[node.name] = data.stop
        else:
            arr = data.data[skip:] if skip else data.data
            self.pending.setdefault(idx, []).append((have, arr))
            self.pending_bytes += arr.nbytes
        self.have[idx] = data.stop
        if self.pending_bytes >= self.saver.owner.flush_bytes:
            self.flush()
        return size

    def _fill(self, node, start: int, stop: int) -> None:
        owner = self.saver.owner
        if node.type == "lima":
            refs = owner.redis_call(lambda: node.get_references(start, stop))
            got = len(refs)
            if got:
                self._add_refs(node.idx, start, refs)
        else:
            arr = owner.redis_call(lambda: node.get(start, stop))
            got = len(arr)
            if got:
                self.pending.setdefault(node.idx, []).append((start, arr))
                self.pending_bytes += arr.nbytes
        if got < stop - start:
            raise ScanSaveError(
                f"scan {self.saver.scan.scan_nb}: points {start + got}..{stop - 1} of "
                f"{node.name!r} are no longer in Redis (lost by a Redis restart without "
                f"persistence?); the scan cannot be saved complete", retry=False)
        self.have[node.idx] = stop

    def _add_refs(self, idx: int, pos: int, refs) -> None:
        runs = self.runs[idx]
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
                for idx, parts in self.pending.items():
                    ops.extend(("data", idx, start, arr) for start, arr in _coalesce(parts))
                self.pending_nodes, self.pending, self.pending_bytes = [], {}, 0
                self.inflight = spawn_blocking(self.sfile.apply, ops)
                self.last_flush = time.monotonic()
            if wait:
                self._collect()

    def _collect(self) -> None:
        inflight, self.inflight = self.inflight, None
        if inflight is None:
            return
        counts = inflight.get()  # raises the write's error
        status = self.saver.status
        for idx, n in counts.items():
            status.channels[self.decls[idx].name] = n
        status.points = max(status.channels.values(), default=0)
        status.bytes_written = self.sfile.bytes_written
        self.saver.owner.notify(status)

    def flush_periodically(self) -> None:
        """Timer greenlet: write what waits for longer than the flush interval."""
        interval = self.saver.owner.flush_interval
        while True:
            gevent.sleep(interval)
            busy = self.inflight is not None and not self.inflight.ready()
            if busy or not (self.pending or self.pending_nodes or self.inflight):
                continue
            try:
                self.flush()
            except BaseException as exc:  # noqa: BLE001 - handed to the walking greenlet
                self.error = exc
                self.saver.stop_handler.stop()
                return

    def raise_error(self) -> None:
        if self.error is not None:
            raise self.error

    def finish(self, end: ScanEnd, info: dict) -> Finalization:
        """Complete what the producer said it published, write it all; the finalisation."""
        notes: list[str] = []
        for idx, decl in self.decls.items():
            expected = end.counts.get(decl.name)
            if expected is not None and self.have[idx] < expected:
                try:
                    self._fill(self.nodes[idx], self.have[idx], expected)
                except (ScanSaveError, ScanExpiredError) as exc:
                    notes.append(str(exc))
        self.flush(wait=True)
        self.raise_error()
        channels = [self.decls[i] for i in sorted(self.decls)]
        lima = {i: [tuple(r) for r in runs] for i, runs in self.runs.items()}
        counts = {i: self.have[i] for i in self.runs}
        status = self.saver.status
        for i in self.runs:
            status.channels[self.decls[i].name] = counts[i]
        return Finalization(channels, lima, counts, info, end, notes)


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
        else:
            run.append((start, arr))
    close_run()
    return out
