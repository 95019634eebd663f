"""The consumer that writes one scan: per-stream buffers, batched writes off the hub.

:class:`ScanWriter` is the :class:`~beacon_ipy.scans.ScanConsumer` that a one-scan
``ScanRunner`` drives for a :class:`~beacon_ipy.saving.scansaver.ScanSaver`: it buffers
each stream's blocks (index-addressed: what comes twice is written once) and hands them
to gevent's threadpool in batches, one batch in flight while the next is read; it
records points trimmed from Redis (``data_lost``) and the scan's end.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import gevent
import gevent.lock
import numpy as np

from beacon_ipy.saving.blocking import spawn_blocking
from beacon_ipy.saving.scanfile import Finalization, ScanFile
from beacon_ipy.scans.consumer import ScanConsumer
from beacon_ipy.scans.events import ScanEnd

if TYPE_CHECKING:
    from beacon_ipy.saving.scansaver import ScanSaver
    from beacon_ipy.scans.errors import ScanDataTrimmedError
    from beacon_ipy.scans.handle import ScanHandle
    from beacon_ipy.scans.streams import StreamDescription

log = logging.getLogger("beacon_ipy.saving")


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
