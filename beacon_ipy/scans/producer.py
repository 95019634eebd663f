"""Producer API: what an acquisition program calls to publish a scan.

::

    scan = create_scan("demo", {"type": "ascan", "title": "ascan mot1 0 1 10 0.1", ...},
                       [ChannelSpec("axis:mot1", unit="mm"), ChannelSpec("diode"),
                        ChannelSpec("mca:spectrum", "float32", (2048,)),
                        LimaSpec("simu2d:image", "uint16", (64, 64))])
    with scan:                                  # start(); end(SUCCESS/FAILURE/ABORTED)
        scan.push({"axis:mot1": 0.0, "diode": 12.5})    # one point, or blocks of any size
        scan.push("mca:spectrum", spectrum)             # (2048,) or (n, 2048)
        scan.push_images("simu2d:image", "/data/img_0000.h5", "/entry_0000/data", 0, count=1)

Data blocks travel as raw bytes (``ndarray.tobytes()``), one stream entry per ``push``
whatever the number of channels in it; dtype and shape are declared once per channel.
Pushes are pipelined (:mod:`.pusher`): a push sends at once but does not wait for Redis's
reply; ``end()`` waits for all of them before publishing the end.
While the scan runs, a heartbeat key is refreshed (by a greenlet every ``heartbeat/3``
seconds and by pushes); if it lapses, listeners end the scan with reason DIED.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import gevent
import gevent.lock
import numpy as np
import redis

from beacon_ipy.connection import get_redis, resolve_url
from beacon_ipy.scans import encoding, scripts
from beacon_ipy.scans.errors import ScanDeclaredDeadError, ScanExpiredError, ScanStateError
from beacon_ipy.scans.events import EndReason
from beacon_ipy.scans.keys import SESSION_EVENTS_MAXLEN, SessionKeys
from beacon_ipy.scans.pusher import PipelinedPusher

log = logging.getLogger(__name__)

DEFAULT_EXPIRE_AFTER_END = 3600.0
"""Seconds an ended scan stays in Redis (unless held)."""
DEFAULT_MAX_SCANS = 100
"""Ended, unheld scans kept per session; older ones are deleted when a scan starts."""
DEFAULT_HEARTBEAT = 10.0
"""Seconds without a heartbeat after which listeners declare the producer dead."""

_NUMERIC_KINDS = "biufc"


@dataclass(frozen=True)
class ChannelSpec:
    """A data channel: one value (``shape == ()``) or one array per point, kept in Redis."""

    name: str
    dtype: str | np.dtype = "float64"
    shape: tuple[int, ...] = ()
    unit: str = ""
    info: Mapping[str, Any] = field(default_factory=dict)

    kind = "channel"


@dataclass(frozen=True)
class LimaSpec:
    """A 2D detector: frames live in the detector's HDF5 files, Redis carries references."""

    name: str
    dtype: str | np.dtype = "uint16"
    shape: tuple[int, int] = (0, 0)
    unit: str = ""
    info: Mapping[str, Any] = field(default_factory=dict)

    kind = "lima"


class _PubNode:
    __slots__ = ("idx", "spec", "dtype", "shape", "count", "field_prefix")

    def __init__(self, idx: int, spec: ChannelSpec | LimaSpec):
        self.idx = idx
        self.spec = spec
        self.dtype = np.dtype(spec.dtype)
        self.shape = tuple(int(n) for n in spec.shape)
        self.count = 0
        self.field_prefix = f"{idx}:"
        if self.dtype.kind not in _NUMERIC_KINDS or self.dtype.fields is not None:
            raise ValueError(f"channel {spec.name!r}: dtype {self.dtype} is not numeric")
        if spec.kind == "lima" and len(self.shape) != 2:
            raise ValueError(f"lima node {spec.name!r}: shape must be (height, width)")

    def declaration(self) -> dict[str, Any]:
        info = {"dtype": self.dtype.str, "shape": list(self.shape), "unit": self.spec.unit}
        info.update(self.spec.info)
        return {"name": self.spec.name, "type": self.spec.kind, "info": info}


class ScanPublisher:
    """One scan being published. Create with :func:`create_scan`.

    States: CREATED (number reserved, nothing visible) -> RUNNING (:meth:`start`) ->
    ENDED (:meth:`end`). Pushes from several greenlets are serialised; it is not
    thread-safe.
    """

    def __init__(self, session: str, scan_info: Mapping[str, Any],
                 channels: Iterable[ChannelSpec | LimaSpec] = (), *,
                 redis_url: str | None = None,
                 expire_after_end: float = DEFAULT_EXPIRE_AFTER_END,
                 max_scans: int = DEFAULT_MAX_SCANS,
                 heartbeat: float = DEFAULT_HEARTBEAT):
        if not isinstance(scan_info, Mapping):
            raise TypeError("scan_info must be a dict")
        if expire_after_end <= 0 or heartbeat <= 0 or max_scans < 1:
            raise ValueError("expire_after_end and heartbeat must be > 0, max_scans >= 1")
        self._keys = SessionKeys(session)
        self.session = session
        self._url = resolve_url(redis_url)
        self._redis = get_redis(self._url)
        self._pusher: PipelinedPusher | None = None  # XADDs on a connection of its own
        self._push_lock = gevent.lock.Semaphore()
        self._uid: str | None = None
        self.expire_after_end = float(expire_after_end)
        self.max_scans = int(max_scans)
        self.heartbeat = float(heartbeat)
        # Validate scan_info before reserving a number: a bad value must not burn one.
        encoding.dumps(dict(scan_info))
        self.scan_nb: int = int(self._redis.incr(self._keys.counter))
        self.scan_keys = self._keys.scan(self.scan_nb)
        info = dict(scan_info)
        info.setdefault("type", "scan")
        info.setdefault("title", str(info["type"]))
        info["scan_nb"] = self.scan_nb
        info["session_name"] = session
        self.name = f"{self.scan_nb}_{info['type']}"
        info["node_name"] = self.name
        self.scan_info: dict[str, Any] = info
        self.state = "CREATED"
        self.end_reason: str | None = None
        self._nodes: dict[str, _PubNode] = {}
        self._data_key = self.scan_keys.data.encode()
        self._beat_glet: gevent.Greenlet | None = None
        self._next_beat = 0.0
        self._dead: str | bool = False
        for spec in channels:
            self.add_channel(spec)

    # -- declaration -------------------------------------------------------------
    def add_channel(self, spec: ChannelSpec | LimaSpec) -> None:
        """Declare a channel or lima node (before or during the scan)."""
        if self.state == "ENDED":
            raise ScanStateError(f"scan {self.name}: cannot add {spec.name!r} after its end")
        if not spec.name or spec.name in self._nodes:
            raise ValueError(f"scan {self.name}: channel name {spec.name!r} is empty or taken")
        node = _PubNode(len(self._nodes), spec)
        decl = node.declaration()
        encoding.dumps(decl)  # fails early on unstorable info
        self._nodes[spec.name] = node
        if self.state == "RUNNING":
            with self._redis.pipeline(transaction=True) as pipe:
                self._declare(pipe, node)
                pipe.execute()

    def _declare(self, pipe, node: _PubNode) -> None:
        decl = node.declaration()
        pipe.hset(self.scan_keys.meta, f"node:{node.idx}", encoding.dumps(decl))
        pipe.xadd(self.scan_keys.data, {"t": "node", "i": node.idx, "name": decl["name"],
                                        "type": decl["type"],
                                        "info": encoding.dumps(decl["info"])})

    @property
    def uid(self) -> str:
        """A unique id of this scan (a uuid), unlike its number, which a Redis restart
        or a reset counter can reuse."""
        if self._uid is None:
            self._uid = uuid.uuid4().hex
        return self._uid

    # -- lifecycle ---------------------------------------------------------------
    def start(self) -> ScanPublisher:
        """Make the scan visible: session event, node declarations, heartbeat."""
        if self.state != "CREATED":
            raise ScanStateError(f"scan {self.name} is already {self.state}")
        self.scan_info.setdefault("start_timestamp", time.time())
        keys = self.scan_keys
        hb_ms = int(self.heartbeat * 1000)
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.meta, mapping={
                "name": self.name, "scan_nb": self.scan_nb, "session": self.session,
                "type": str(self.scan_info["type"]), "info": encoding.dumps(self.scan_info),
                "state": "RUNNING", "heartbeat_ms": hb_ms,
                "expire_ms": int(self.expire_after_end * 1000),
                "start_time": repr(time.time()),
                "producer": f"{socket.gethostname()}:{os.getpid()}",
                "uid": self.uid,
            })
            for node in self._nodes.values():
                self._declare(pipe, node)
            pipe.set(keys.alive, b"1", px=hb_ms)
            scripts.run(pipe, "start", self.session, self.scan_nb, self.max_scans,
                        SESSION_EVENTS_MAXLEN, self.name)
            pipe.execute()
        self.state = "RUNNING"
        self._next_beat = time.monotonic() + self.heartbeat / 3
        self._beat_glet = gevent.spawn(self._beat_loop)
        return self

    def end(self, reason: str | EndReason = EndReason.SUCCESS,
            info: Mapping[str, Any] | None = None) -> None:
        """End the scan; listeners get END_SCAN after all data. ``info`` goes in ScanEnd.info."""
        reason = str(EndReason(str(reason)))
        if reason == "DIED":
            raise ValueError("DIED is set by listeners only; use FAILURE or ABORTED")
        if self.state != "RUNNING":
            raise ScanStateError(f"scan {self.name} is {self.state}: only a running scan ends")
        self._stop_beat()
        if self._pusher is not None:
            with self._push_lock:
                self._pusher.flush()  # every data entry is in Redis before the end entry
            self._close_pusher()
        counts = {name: node.count for name, node in self._nodes.items()}
        result = scripts.run(self._redis, "end", self.session, self.scan_nb, reason,
                             repr(time.time()), json.dumps(counts),
                             encoding.dumps(dict(info or {})), SESSION_EVENTS_MAXLEN)
        self.state = "ENDED"
        if result == b"ENDED":
            self.end_reason = "DIED"
            raise ScanDeclaredDeadError(self._dead_message())
        if result != b"OK":
            raise ScanExpiredError(self.session, self.scan_nb, "before its end was published")
        self.end_reason = reason

    def __enter__(self) -> ScanPublisher:
        if self.state == "CREATED":
            self.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.state != "RUNNING":
            return
        if exc_type is None:
            reason = EndReason.SUCCESS
        elif issubclass(exc_type, (KeyboardInterrupt, gevent.GreenletExit)):
            reason = EndReason.ABORTED
        else:
            reason = EndReason.FAILURE
        try:
            self.end(reason, {"error": repr(exc)} if exc is not None else None)
        except (ScanDeclaredDeadError, redis.exceptions.RedisError):
            if exc_type is None:
                raise
            log.exception("scan %s: could not publish its end", self.name)

    # -- data --------------------------------------------------------------------
    def push(self, data: Mapping[str, Any] | str, values: Any = None) -> None:
        """Publish a block for one channel (``push(name, values)``) or several (a dict).

        A block is one point (a scalar for 0d channels, an array of the channel's shape
        for 1d) or several points (an array of shape ``(n, *shape)``). One stream entry
        per call, whatever the number of channels.
        """
        if isinstance(data, str):
            data = {data: values}
        with self._push_lock:  # start indices and counts must match the entry order
            fields: list[bytes | str] = ["t", "data"]
            updates: list[tuple[_PubNode, int]] = []
            for name, block in data.items():
                node = self._node(name, "channel")
                arr = self._as_block(node, block)
                if len(arr):
                    fields.append(f"{node.idx}:{node.count}")
                    fields.append(arr.tobytes())
                    updates.append((node, len(arr)))
            if updates:
                self._xadd(fields)
                for node, n in updates:
                    node.count += n
        self._beat_if_due()

    def push_images(self, name: str, file: str, dataset_path: str, first_index: int = 0,
                    count: int = 1) -> None:
        """Publish ``count`` new images stored in ``file`` at ``dataset_path``.

        They become images ``n .. n+count`` of the lima node, found at frames
        ``first_index .. first_index+count`` of that dataset. Publish only frames that
        are already written and flushed, so that listeners can read them.
        """
        if count < 1 or first_index < 0:
            raise ValueError("push_images needs count >= 1 and first_index >= 0")
        payload = json.dumps([[str(file), str(dataset_path), int(first_index), int(count)]])
        with self._push_lock:
            node = self._node(name, "lima")
            self._xadd(["t", "data", f"{node.idx}:{node.count}", payload])
            node.count += count
        self._beat_if_due()

    def count(self, name: str) -> int:
        """Number of points (images) published so far on ``name``."""
        return self._nodes[name].count

    # -- internals ---------------------------------------------------------------
    def _node(self, name: str, kind: str) -> _PubNode:
        if self.state != "RUNNING":
            raise ScanStateError(f"scan {self.name} is {self.state}: push only while running "
                                 f"(call start() first)")
        if self._dead == "gone":
            raise ScanExpiredError(self.session, self.scan_nb, "it vanished while running: "
                                   "the Redis server restarted empty, or it was deleted")
        if self._dead:
            raise ScanDeclaredDeadError(self._dead_message())
        node = self._nodes.get(name)
        if node is None:
            raise KeyError(f"scan {self.name} has no channel {name!r}; declared: "
                           f"{sorted(self._nodes)}")
        if node.spec.kind != kind:
            raise TypeError(f"{name!r} is a {node.spec.kind} node: use "
                            f"{'push_images' if node.spec.kind == 'lima' else 'push'}")
        return node

    @staticmethod
    def _as_block(node: _PubNode, block: Any) -> np.ndarray:
        arr = np.asarray(block)
        if arr.dtype != node.dtype:
            if arr.dtype.kind not in _NUMERIC_KINDS or not np.can_cast(
                    arr.dtype, node.dtype, "same_kind"):
                raise TypeError(f"channel {node.spec.name!r} is {node.dtype}: cannot store "
                                f"{arr.dtype} values in it (convert explicitly)")
            arr = arr.astype(node.dtype)
        if arr.shape == node.shape:
            arr = arr[np.newaxis]
        elif arr.shape[1:] != node.shape:
            raise ValueError(f"channel {node.spec.name!r} has points of shape {node.shape}: "
                             f"got a block of shape {arr.shape} (expected {node.shape} or "
                             f"(n, {', '.join(map(str, node.shape))}))".replace(", )", ")"))
        return np.ascontiguousarray(arr)

    def _xadd(self, fields: list) -> None:
        """Send one entry (lock held), pipelined on the publisher's own connection."""
        if self._pusher is None:
            self._pusher = PipelinedPusher(self._url, self._data_key)
        self._pusher.send(fields)

    def _beat_if_due(self) -> None:
        if time.monotonic() >= self._next_beat:
            self._after_beat(scripts.run(self._redis, "heartbeat", self.session, self.scan_nb))

    def _close_pusher(self) -> None:
        pusher, self._pusher = self._pusher, None
        if pusher is not None:
            pusher.close()

    def _after_beat(self, alive) -> None:
        self._next_beat = time.monotonic() + self.heartbeat / 3
        if alive != 1 and self.state == "RUNNING":
            self._dead = "gone" if alive == -1 else "died"

    def _beat_loop(self) -> None:
        while self.state == "RUNNING" and not self._dead:
            gevent.sleep(max(0.0, self._next_beat - time.monotonic()))
            if time.monotonic() < self._next_beat:
                continue  # a push refreshed it meanwhile
            try:
                alive = scripts.run(self._redis, "heartbeat", self.session, self.scan_nb)
            except redis.exceptions.RedisError as exc:
                log.warning("scan %s: heartbeat failed (%s); retrying", self.name, exc)
                self._next_beat = time.monotonic() + min(1.0, self.heartbeat / 10)
                continue
            self._after_beat(alive)

    def _stop_beat(self) -> None:
        glet, self._beat_glet = self._beat_glet, None
        if glet is not None and glet is not gevent.getcurrent():
            glet.kill(block=False)

    def _dead_message(self) -> str:
        return (f"scan {self.name} of session {self.session!r} was ended with reason DIED by a "
                f"listener: its heartbeat lapsed (no refresh for {self.heartbeat} s). Let the "
                f"gevent hub run (gevent.sleep, not time.sleep) or raise 'heartbeat'.")


def create_scan(session: str, scan_info: Mapping[str, Any],
                channels: Iterable[ChannelSpec | LimaSpec] = (), **options) -> ScanPublisher:
    """Reserve the next scan number of ``session`` and return its publisher (not started).

    ``options``: ``redis_url``, ``expire_after_end`` (s), ``max_scans``, ``heartbeat`` (s).
    """
    return ScanPublisher(session, scan_info, channels, **options)
