"""Producer API: a thin layer over blissdata scans with BLISS-shaped identity and scan_info.

::

    from beacon_ipy.scans import StreamDescription as S, create_scan
    with create_scan("demo", {"type": "ascan", "title": "ascan sx 0 1 10 0.1",
                              "npoints": 11, "count_time": 0.1},
                     [S.scalar("axis:sx", unit="mm"), S.scalar("simu:diode")]) as scan:
        scan.push({"axis:sx": 0.0, "simu:diode": 12.0})
    # leaving the block ends it: SUCCESS, FAILURE on an exception, ABORTED on Ctrl-C

Lifecycle (blissdata's ``ScanState``): ``create_scan`` -> CREATED (streams may still be
added) -> :meth:`ScanPublisher.start` -> PREPARED then STARTED (``h5maps`` and the
final scan_info written) -> :meth:`~ScanPublisher.push` / :meth:`~ScanPublisher.push_images`
-> :meth:`~ScanPublisher.end` -> STOPPED (streams sealed) then CLOSED (``end_reason``,
``end_time``, ``positioners_end`` added). While STARTED, a liveness key with a TTL is
refreshed every ``heartbeat`` seconds by a thread with its own connection (a socket
shared with the publishing thread breaks in gevent-patched processes that keep real
threads, as the beacon kernel); a listener that finds it gone ends the scan with reason
DIED.
"""

from __future__ import annotations

import getpass
import logging
import threading
import time
import weakref
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from beacon_ipy.scans import bdgaps
from beacon_ipy.scans.errors import ScanStateError
from beacon_ipy.scans.events import EndReason
from beacon_ipy.scans.scan_info import complete_scan_info
from beacon_ipy.scans.streams import StreamDescription

log = logging.getLogger("beacon_ipy.scans")

DEFAULT_HEARTBEAT = 1.0
"""Seconds between refreshes of a scan's liveness key (its TTL is 5 heartbeats)."""
NUMBER_KEY = "beacon_ipy:scan_number:{session}"
_STARTED = 2  # blissdata's ScanState.STARTED (an IntEnum), without importing it per push


def _now_iso() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat()


class ScanPublisher:
    """One scan being published. Create with :func:`create_scan`; not thread-safe."""

    def __init__(self, session: str, scan_info: Mapping[str, Any],
                 streams: Iterable[StreamDescription] = (), *, redis_url: str | None = None,
                 path: str | Path | None = None, number: int | None = None,
                 heartbeat: float = DEFAULT_HEARTBEAT, h5maps: bool = True):
        if not isinstance(scan_info, Mapping):
            raise TypeError("scan_info must be a dict")
        if not session or not isinstance(session, str):
            raise ValueError(f"session must be a non-empty string, not {session!r}")
        if heartbeat <= 0:
            raise ValueError("heartbeat must be > 0 seconds")
        self.session = session
        self.url = bdgaps.data_url(redis_url)
        self.store = bdgaps.data_store(self.url)
        self.heartbeat = float(heartbeat)
        self.with_h5maps = h5maps
        info = dict(scan_info)
        scan_type = str(info.setdefault("type", "scan"))
        if number is None:
            number = reserve_scan_number(session, redis_url)
        self.scan_nb = int(number)
        self.path = str(Path(path).absolute()) if path is not None else None
        identity = {"name": scan_type, "number": self.scan_nb, "data_policy": "no_policy",
                    "session": session, "path": self.path}
        info.setdefault("title", scan_type)
        info.update({"scan_nb": self.scan_nb, "session_name": session,
                     "name": scan_type, "node_name": f"{self.scan_nb}_{scan_type}"})
        info.setdefault("user_name", getpass.getuser())
        self.name = info["node_name"]
        self._streams: dict[str, StreamDescription] = {}
        self._writers: dict[str, Any] = {}
        self._numeric: dict[str, tuple[StreamDescription, Any]] = {}
        self.counts: dict[str, int] = {}
        self.scan = self.store.create_scan(identity, info=info)
        self.key: str = self.scan.key
        self.liveness_key = bdgaps.liveness_key(self.key)
        self.end_reason: str | None = None
        self._beat_stop = threading.Event()
        self._beat_thread: threading.Thread | None = None
        for desc in streams:
            self.add_stream(desc)

    # -- properties --------------------------------------------------------------------
    @property
    def state(self):
        """blissdata's ``ScanState`` of the scan."""
        return self.scan.state

    @property
    def scan_info(self) -> dict[str, Any]:
        return self.scan.info

    @property
    def streams(self) -> dict[str, StreamDescription]:
        return dict(self._streams)

    def count(self, name: str) -> int:
        """Number of points (images) published so far on ``name``."""
        return self.counts[name]

    # -- declaration -------------------------------------------------------------------
    def add_stream(self, desc: StreamDescription) -> None:
        """Declare a stream (blissdata: only before :meth:`start`)."""
        from blissdata import ScanState
        from blissdata.streams.default import Stream

        if not isinstance(desc, StreamDescription):
            raise TypeError(f"streams are StreamDescription objects, not {type(desc).__name__}")
        if self.scan.state != ScanState.CREATED:
            raise ScanStateError(f"scan {self.name}: streams are declared before start() "
                                 f"(blissdata fixes them at PREPARED); cannot add {desc.name!r}")
        if desc.name in self._streams:
            raise ValueError(f"scan {self.name}: stream name {desc.name!r} is taken")
        info = {"unit": desc.unit, "display_name": desc.display_name}
        if desc.is_image:
            if desc.files is None:
                raise ValueError(f"image stream {desc.name!r} needs files=ImageFiles(...): "
                                 f"frames are referenced in files, never sent to Redis")
            from blissdata.streams.lima.stream import LimaStream  # heavy: only when needed

            f = desc.files
            definition = LimaStream.make_definition(
                desc.name, desc.dtype, list(desc.shape),
                server_url=f"beacon-ipy:{desc.name}", buffer_max_number=0,
                frames_per_acquisition=2**31 - 1, acquisition_offset=0,
                saving={"file_path": f.file_pattern, "data_path": f.data_path,
                        "file_format": f.file_format, "file_offset": f.file_offset,
                        "frames_per_file": f.frames_per_file}, info=info)
        else:
            definition = Stream.make_definition(desc.name, desc.dtype, desc.shape, info=info)
        self._writers[desc.name] = self.scan.create_stream(definition)
        self._streams[desc.name] = desc
        if not desc.is_image:
            self._numeric[desc.name] = (desc, self._writers[desc.name])
        self.counts[desc.name] = 0

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> ScanPublisher:
        """PREPARED (scan_info completed, ``h5maps``) then STARTED; liveness key set."""
        from blissdata import ScanState

        if self.scan.state != ScanState.CREATED:
            raise ScanStateError(f"scan {self.name} is already {self.scan.state.name}")
        info = self.scan.info
        info.setdefault("start_time", _now_iso())
        info.setdefault("start_timestamp", time.time())
        complete_scan_info(info, self._streams)
        info["beacon_ipy"] = {"liveness_key": self.liveness_key, "heartbeat": self.heartbeat}
        if self.with_h5maps and self.path is not None:
            from beacon_ipy.scans.h5maps import scan_h5maps

            info["h5maps"] = scan_h5maps(self.path, self.scan_nb, info, self._streams)
        self.store._redis.set(self.liveness_key, b"1", px=int(self.heartbeat * 5000))
        self.scan.prepare()
        self.scan.start()
        self._beat_thread = threading.Thread(
            target=_beat_loop, args=(weakref.ref(self), self._beat_stop), daemon=True,
            name=f"beacon-ipy liveness {self.name}")
        self._beat_thread.start()
        return self

    def end(self, reason: str | EndReason = EndReason.SUCCESS,
            info: Mapping[str, Any] | None = None) -> None:
        """Seal every stream (STOPPED), add ``info`` and ``end_reason`` to scan_info, and
        close (CLOSED). Listeners get END_SCAN after all data."""
        from blissdata import ScanState

        reason = EndReason(str(reason))
        if reason in (EndReason.DIED, EndReason.DELETION):
            raise ValueError(f"{reason.value} is decided by listeners; use FAILURE or ABORTED")
        if self.scan.state != ScanState.STARTED:
            raise ScanStateError(f"scan {self.name} is {self.scan.state.name}: only a "
                                 f"started scan ends")
        self.scan.stop()
        final = self.scan.info
        final.update(dict(info or {}))
        final["end_reason"] = reason.value
        final.setdefault("end_time", _now_iso())
        final.setdefault("end_timestamp", time.time())
        if "h5maps" in final:
            from beacon_ipy.scans.h5maps import end_h5maps

            end_h5maps(final["h5maps"], self.scan_nb, final)
        self.scan.close()
        self.end_reason = reason.value
        self._stop_beat()
        self.store._redis.delete(self.liveness_key)

    def __enter__(self) -> ScanPublisher:
        from blissdata import ScanState

        if self.scan.state == ScanState.CREATED:
            self.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        from blissdata import ScanState

        if self.scan.state != ScanState.STARTED:
            return
        if exc_type is None:
            reason = EndReason.SUCCESS
        elif issubclass(exc_type, KeyboardInterrupt) or exc_type.__name__ == "GreenletExit":
            reason = EndReason.ABORTED
        else:
            reason = EndReason.FAILURE
        try:
            self.end(reason, {"error": repr(exc)} if exc is not None else None)
        except Exception:
            if exc_type is None:
                raise
            log.exception("scan %s: could not publish its end", self.name)

    # -- data --------------------------------------------------------------------------
    def push(self, data: Mapping[str, Any] | str, values: Any = None) -> None:
        """Publish a block for one stream (``push(name, values)``) or several (a dict).

        A block is one point (a scalar for 0d streams, an array of the stream's shape for
        1d) or several points (an array of shape ``(n, *shape)``).
        """
        if isinstance(data, str):
            data = {data: values}
        if self.scan.state != _STARTED:
            self._writer(next(iter(data), ""), image=False)  # raises the clear error
        targets, counts = self._numeric, self.counts
        for name, block in data.items():
            target = targets.get(name)
            if target is None:
                self._writer(name, image=False)  # raises the clear error
            desc, writer = target
            if (type(block) is np.ndarray and block.dtype == desc.dtype
                    and block.ndim == len(desc.shape) + 1 and block.shape[1:] == desc.shape
                    and block.flags.c_contiguous):
                arr = block  # the fast path: a ready (n, *shape) block
            else:
                arr = _as_block(desc, block)
            if len(arr):
                writer.send(arr)
                counts[name] += len(arr)

    def flush(self) -> None:
        """Wait until every block pushed so far is in Redis (pushes are pipelined by
        blissdata's sender: ``push`` returns before the data is stored)."""
        for writer in self._writers.values():
            writer.join()

    def push_images(self, name: str, count: int = 1) -> None:
        """Publish ``count`` more images of image stream ``name``: they must already be
        written and flushed in the stream's files (``ImageFiles``), frame ``i`` of the
        scan where the pattern says."""
        if count < 1:
            raise ValueError("push_images needs count >= 1")
        _, writer = self._writer(name, image=True)
        self.counts[name] += int(count)
        last = self.counts[name] - 1
        writer.send({"last_index": last, "last_index_saved": last})

    def _writer(self, name: str, image: bool):
        if self.scan.state != _STARTED:
            raise ScanStateError(f"scan {self.name} is {self.scan.state.name}: push only "
                                 f"while started (call start() first)")
        desc = self._streams.get(name)
        if desc is None:
            raise KeyError(f"scan {self.name} has no stream {name!r}; declared: "
                           f"{sorted(self._streams)}")
        if desc.is_image != image:
            raise TypeError(f"{name!r} is {'an image' if desc.is_image else 'a numeric'} "
                            f"stream: use {'push_images' if desc.is_image else 'push'}")
        return desc, self._writers[name]

    # -- liveness ----------------------------------------------------------------------
    def _stop_beat(self) -> None:
        self._beat_stop.set()
        thread, self._beat_thread = self._beat_thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)


def _beat_loop(ref: weakref.ref, stop: threading.Event) -> None:
    """Refresh a publisher's liveness key until it ends or is garbage-collected, over a
    connection of this thread's own."""
    import redis

    publisher = ref()
    if publisher is None:
        return
    client = redis.Redis.from_url(publisher.url)
    del publisher
    failing = False
    try:
        while True:
            publisher = ref()
            if publisher is None:
                return
            heartbeat, key, name = publisher.heartbeat, publisher.liveness_key, publisher.name
            del publisher  # no strong reference while waiting
            if stop.wait(heartbeat):
                return
            try:
                client.set(key, b"1", px=int(heartbeat * 5000))
                failing = False
            except Exception as exc:  # noqa: BLE001 - keep beating through outages
                if not failing:
                    log.warning("scan %s: liveness refresh failed (%s); retrying", name, exc)
                failing = True
    finally:
        client.close()


def _as_block(desc: StreamDescription, block: Any) -> np.ndarray:
    arr = np.asarray(block)
    if arr.dtype != desc.dtype:
        if arr.dtype.kind not in "biuf" or not np.can_cast(arr.dtype, desc.dtype, "same_kind"):
            raise TypeError(f"stream {desc.name!r} is {desc.dtype}: cannot store {arr.dtype} "
                            f"values in it (convert explicitly)")
        arr = arr.astype(desc.dtype)
    if arr.shape == desc.shape:
        arr = arr[np.newaxis]
    elif arr.shape[1:] != desc.shape:
        raise ValueError(f"stream {desc.name!r} has points of shape {desc.shape}: got a "
                         f"block of shape {arr.shape}")
    return np.ascontiguousarray(arr)


def reserve_scan_number(session: str, redis_url: str | None = None) -> int:
    """The next scan number of ``session`` (a counter on the data Redis)."""
    store = bdgaps.data_store(redis_url)
    return int(store._redis.incr(NUMBER_KEY.format(session=session)))


def create_scan(session: str, scan_info: Mapping[str, Any],
                streams: Iterable[StreamDescription] = (), **options) -> ScanPublisher:
    """Create a scan (CREATED) in ``session`` and return its publisher.

    ``options``: ``redis_url``, ``path`` (the scan's HDF5 data file, as BLISS's
    ``SCAN_SAVING.filename``: made absolute, put in the identity, and the file ``h5maps``
    names, entry ``"<number>.1"``), ``number`` (default: the session's next number),
    ``heartbeat`` (s), ``h5maps`` (default True, when ``path`` is given).
    """
    return ScanPublisher(session, scan_info, streams, **options)
