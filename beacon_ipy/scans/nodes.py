"""Listener-side nodes: session -> scans -> channel and lima nodes (the BLISS-style API).

``node.type`` is ``"session"``, ``"scan"``, ``"channel"`` or ``"lima"``; ``node.name`` and
``node.info`` are what the producer declared (scan_info for a scan; dtype, shape, unit
for a channel). Reads go through the process's shared client; walks (in
:mod:`.walker`) block on a connection of their own.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from beacon_ipy.connection import get_redis, resolve_url
from beacon_ipy.scans import encoding, scripts
from beacon_ipy.scans.entries import end_from_fields, expand_runs
from beacon_ipy.scans.errors import ScanExpiredError
from beacon_ipy.scans.events import ImageRef, ScanEnd
from beacon_ipy.scans.index import ScanIndex
from beacon_ipy.scans.keys import SessionKeys, check_session_name

DEFAULT_HOLD_TTL = 7 * 24 * 3600.0
"""Safety TTL of a hold (s): a holder that dies without releasing stops holding then."""

NodeFilter = str | Sequence[str] | Callable[[Any], bool] | None


class _DataNode:
    """What channel and lima nodes share: their scan, index, name, dtype, shape, unit."""

    type = ""

    def __init__(self, scan: ScanNode, idx: int, name: str, info: dict[str, Any]):
        self.scan = scan
        self.parent = scan
        self.idx = idx
        self.name = name
        self.info = info
        self.dtype = np.dtype(info["dtype"])
        self.shape = tuple(int(n) for n in info.get("shape", ()))
        self.unit = str(info.get("unit", "") or "")


class ChannelNode(_DataNode):
    """A channel of a scan: one value or one array per point, kept in Redis."""

    type = "channel"

    def __init__(self, scan: ScanNode, idx: int, name: str, info: dict[str, Any]):
        super().__init__(scan, idx, name, info)
        self.frame_bytes = self.dtype.itemsize * math.prod(self.shape)
        self.block_shape = (-1, *self.shape)
        if self.frame_bytes <= 0:
            raise ValueError(f"channel {name!r} declares points of {self.frame_bytes} bytes")

    def __len__(self) -> int:
        """Number of points that have arrived."""
        return self.scan._index().node(self.idx).count

    def get(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Points ``start`` to ``stop`` (exclusive; Python slice rules, negative from the end
        of what has arrived; ``None`` = up to the last point) as an array of shape
        ``(n, *shape)``. Unlike BLISS's ``get(from, to)``, ``stop`` is exclusive.
        """
        index = self.scan._index()
        ni = index.node(self.idx)
        start, stop, _ = slice(start, stop).indices(ni.count)
        if stop <= start:
            return np.empty((0, *self.shape), dtype=self.dtype)
        k0, k1 = ni.blocks(start, stop)
        first_point = ni.block_start(k0)
        entries = self.scan._redis.xrange(self.scan.keys.data, ni.entry_id(k0), ni.entry_id(k1))
        prefix = f"{self.idx}:".encode()
        # only the entries the index accepted (a malformed one may sit between them)
        wanted = {ni.entry_id(k).encode() for k in range(k0, k1 + 1)}
        parts = [v for entry_id, fields in entries if entry_id in wanted
                 for f, v in fields.items() if f.startswith(prefix)]
        data = np.frombuffer(b"".join(parts), dtype=self.dtype).reshape((-1, *self.shape))
        if len(data) < stop - first_point:
            raise ScanExpiredError(self.scan.session, self.scan.scan_nb,
                                   f"data of {self.name!r} disappeared while reading")
        return data[start - first_point:stop - first_point]

    def __repr__(self) -> str:
        return f"<ChannelNode {self.name!r} {self.dtype}{list(self.shape)} of {self.scan.name}>"


class LimaNode(_DataNode):
    """A 2D detector: frames live in its HDF5 files; Redis carries references."""

    type = "lima"

    def __init__(self, scan: ScanNode, idx: int, name: str, info: dict[str, Any]):
        super().__init__(scan, idx, name, info)
        self.frame_bytes = 0  # frames are not in Redis

    def __len__(self) -> int:
        """Number of images published so far."""
        return self.scan._index().node(self.idx).count

    def get_references(self, start: int = 0, stop: int | None = None) -> list[ImageRef]:
        """``(file, dataset_path, index)`` of images ``start..stop`` (exclusive, slice rules)."""
        ni = self.scan._index().node(self.idx)
        start, stop, _ = slice(start, stop).indices(ni.count)
        refs: list[ImageRef] = []
        for pos, f, p, first, n in ni.runs:
            lo, hi = max(start, pos), min(stop, pos + n)
            if lo < hi:
                refs.extend(expand_runs([(f, p, first + lo - pos, hi - lo)]))
        return refs

    get = get_references

    def get_image(self, index: int) -> np.ndarray:
        """Frame ``index`` (negative from the end), read from the detector's file."""
        refs = self.get_references(index, index + 1 if index != -1 else None)
        if not refs:
            raise IndexError(f"{self.name}: image {index} not published (have {len(self)})")
        return read_frame(refs[0])

    def __repr__(self) -> str:
        return f"<LimaNode {self.name!r} {self.dtype}{list(self.shape)} of {self.scan.name}>"


def read_frame(ref: ImageRef) -> np.ndarray:
    """Read one frame from a detector HDF5 file (SWMR if the writer still has it open)."""
    import h5py

    if not os.path.exists(ref.file):
        raise FileNotFoundError(f"detector file {ref.file} not found (moved, deleted, or "
                                f"written on another machine)")
    fh = None
    errors = []
    # SWMR first (the writer may still have it open, maybe in this very process), then
    # plain read, then without file locking (read-only media, NFS without locks).
    for kwargs in ({"swmr": True}, {}, {"locking": False}):
        try:
            fh = h5py.File(ref.file, "r", **kwargs)
            break
        except (OSError, ValueError) as exc:
            errors.append(str(exc))
    if fh is None:
        raise OSError(f"cannot open detector file {ref.file}: {'; '.join(errors)}")
    with fh:
        dset = fh[ref.path]
        if fh.swmr_mode and fh.mode == "r":
            # See frames flushed since the file was opened. Only for a SWMR reader of its
            # own: refreshing a dataset shared with another handle of this process (a
            # VDS, the writer itself) corrupts reads.
            dset.refresh()
        if ref.index >= len(dset):
            raise IndexError(f"{ref.file}:{ref.path} has {len(dset)} frames, not {ref.index + 1}")
        return dset[ref.index]


class ScanNode:
    """A scan of a session. ``info`` is its scan_info; its nodes are channels and lima."""

    type = "scan"

    def __init__(self, session: str, scan_nb: int, redis_url: str | None = None):
        self.session = check_session_name(session)
        self.scan_nb = int(scan_nb)
        self.keys = SessionKeys(session).scan(self.scan_nb)
        self.redis_url = resolve_url(redis_url)
        self._redis = get_redis(self.redis_url)
        self._meta: dict[bytes, bytes] | None = None
        self._info: dict[str, Any] | None = None
        self._nodes: dict[int, ChannelNode | LimaNode] = {}
        self._scan_index: ScanIndex | None = None

    # -- metadata -----------------------------------------------------------------
    def _load_meta(self, refresh: bool = False) -> dict[bytes, bytes]:
        if self._meta is None or refresh:
            meta = self._redis.hgetall(self.keys.meta)
            if not meta:
                raise ScanExpiredError(self.session, self.scan_nb)
            self._meta = meta
        return self._meta

    def _check_exists(self) -> None:
        if not self._redis.exists(self.keys.meta):
            raise ScanExpiredError(self.session, self.scan_nb)

    def exists(self) -> bool:
        """True while the scan is still in Redis."""
        return bool(self._redis.exists(self.keys.meta))

    @property
    def name(self) -> str:
        """Node name, ``"<scan_nb>_<type>"`` (e.g. ``"3_ascan"``)."""
        return self._load_meta()[b"name"].decode()

    @property
    def uid(self) -> str:
        """The scan's unique id (a uuid set by its producer), stable while the scan
        exists: use it, not the number, to tell scans apart across Redis restarts."""
        uid = self._load_meta().get(b"uid")
        if uid is None:  # written by an older producer: derive a stable stand-in
            return f"{self.session}/{self.scan_nb}/{self.info.get('start_timestamp')!r}"
        return uid.decode()

    @property
    def info(self) -> dict[str, Any]:
        """The scan_info dict (numpy values and NaN round-trip)."""
        if self._info is None:
            self._info = encoding.loads(self._load_meta()[b"info"])
        return self._info

    scan_info = info

    @property
    def state(self) -> str:
        """``"RUNNING"`` or ``"ENDED"`` (read now)."""
        return self._load_meta(refresh=True)[b"state"].decode()

    @property
    def end(self) -> ScanEnd | None:
        """How the scan ended (read now), None while it runs."""
        m = self._load_meta(refresh=True)
        if m.get(b"state") != b"ENDED":
            return None
        return end_from_fields(m.get(b"end_reason"), m.get(b"end_by"), m.get(b"end_time"),
                               m.get(b"end_counts"), m.get(b"end_info"))

    @property
    def end_reason(self) -> str | None:
        end = self.end
        return end.reason if end else None

    @property
    def heartbeat(self) -> float:
        return int(self._load_meta()[b"heartbeat_ms"]) / 1000

    def ttl(self) -> float | None:
        """Seconds before the scan expires from Redis (None if it has no TTL or is gone)."""
        ms = self._redis.pttl(self.keys.meta)
        return ms / 1000 if ms >= 0 else None

    # -- nodes --------------------------------------------------------------------
    def _node_from_declaration(self, idx: int, name: str, type_: str, info: dict):
        node = self._nodes.get(idx)
        if node is None:
            cls = {"channel": ChannelNode, "lima": LimaNode}.get(type_)
            if cls is None:
                raise ValueError(f"unknown node type {type_!r}")
            node = cls(self, idx, name, info)
            self._nodes[idx] = node
        return node

    def _nodes_by_index(self, refresh: bool = False) -> dict[int, ChannelNode | LimaNode]:
        meta = self._load_meta(refresh=refresh or not self._nodes)
        for field, value in meta.items():
            if field.startswith(b"node:"):
                idx = int(field[5:])
                if idx not in self._nodes:
                    decl = encoding.loads(value)
                    self._node_from_declaration(idx, decl["name"], decl["type"], decl["info"])
        return dict(self._nodes)

    @property
    def nodes(self) -> dict[str, ChannelNode | LimaNode]:
        """Channel and lima nodes declared so far, by name, in declaration order."""
        return {n.name: n for _, n in sorted(self._nodes_by_index(refresh=True).items())}

    def get_node(self, name: str) -> ChannelNode | LimaNode:
        nodes = self.nodes
        if name not in nodes:
            raise KeyError(f"scan {self.name} has no node {name!r}; it has {list(nodes)}")
        return nodes[name]

    def _index(self) -> ScanIndex:
        if self._scan_index is None:
            self._scan_index = ScanIndex(self)
        self._scan_index.update()
        return self._scan_index

    # -- walking ------------------------------------------------------------------
    def walk_events(self, *, after: str | None = None, wait: bool = True,
                    include_filter: NodeFilter = None, stop_handler=None,
                    timeout: float | None = None, started_event=None,
                    count: int = 1000) -> Iterator[tuple]:
        """Yield ``(event_type, node, event_data)`` for this scan, from its beginning.

        NEW_NODE for each channel/lima node, NEW_DATA with the new block(s), END_SCAN
        last (never before data published before it). ``after``: a cursor from an earlier
        event to resume from. ``wait=False``: stop at the end of what exists now.
        ``timeout``: end the walk (quietly) after that many seconds. ``stop_handler``: a
        :class:`StopHandler` whose ``stop()`` ends the walk from another greenlet.
        If the producer's heartbeat lapses, the walk ends with END_SCAN reason DIED.
        """
        from beacon_ipy.scans.walker import walk_scan

        return walk_scan(self, after=after, wait=wait, include_filter=include_filter,
                         stop_handler=stop_handler, timeout=timeout,
                         started_event=started_event, count=count)

    # -- retention ----------------------------------------------------------------
    def hold(self, holder: str, ttl: float = DEFAULT_HOLD_TTL) -> float:
        """Keep this scan in Redis until ``release(holder)`` (or ``ttl`` s, a safety net).

        Returns the scan's TTL in seconds. Calling again refreshes the hold.
        """
        result = scripts.run(self._redis, "hold", self.session, self.scan_nb, holder,
                             int(ttl * 1000))
        if result < 0:
            raise ScanExpiredError(self.session, self.scan_nb, "cannot hold it")
        return result / 1000

    def release(self, holder: str) -> None:
        """Drop ``holder``'s hold; without holds the scan expires ``expire_after_end`` later."""
        scripts.run(self._redis, "release", self.session, self.scan_nb, holder)

    def holds(self) -> dict[str, float]:
        """Current holders and their deadlines (Redis time, s since the epoch)."""
        return {k.decode(): int(v) / 1000 for k, v in self._redis.hgetall(self.keys.holds).items()}

    def __repr__(self) -> str:
        return f"<ScanNode {self.session}/{self.scan_nb}>"

    def __eq__(self, other) -> bool:
        return (isinstance(other, ScanNode) and (self.session, self.scan_nb, self.redis_url)
                == (other.session, other.scan_nb, other.redis_url))

    def __hash__(self) -> int:
        return hash((self.session, self.scan_nb))


class SessionNode:
    """A session: its scans, and walks over what happens in them."""

    type = "session"

    def __init__(self, name: str, redis_url: str | None = None):
        self.name = check_session_name(name)
        self.keys = SessionKeys(name)
        self.redis_url = resolve_url(redis_url)
        self._redis = get_redis(self.redis_url)
        self.info: dict[str, Any] = {"name": name}

    def scan_numbers(self) -> list[int]:
        """Numbers of the scans still in Redis, oldest first."""
        nbs = [int(m) for m in self._redis.zrange(self.keys.scans, 0, -1)]
        if not nbs:
            return []
        with self._redis.pipeline(transaction=False) as pipe:
            for nb in nbs:
                pipe.exists(self.keys.scan(nb).meta)
            exists = pipe.execute()
        return [nb for nb, ok in zip(nbs, exists, strict=True) if ok]

    def scans(self) -> list[ScanNode]:
        """The scans still in Redis (running or ended), oldest first."""
        return [ScanNode(self.name, nb, self.redis_url) for nb in self.scan_numbers()]

    def get_scan(self, scan_nb: int) -> ScanNode:
        """Scan number ``scan_nb``; raises :class:`ScanExpiredError` if it is gone."""
        scan = ScanNode(self.name, scan_nb, self.redis_url)
        scan._load_meta()
        return scan

    def walk_on_new_events(self, include_filter: NodeFilter = None, from_next: bool = False,
                           *, stop_handler=None, timeout: float | None = None,
                           started_event=None, count: int = 1000) -> Iterator[tuple]:
        """Yield ``(event_type, node, event_data)`` for what happens in this session.

        ``include_filter``: a node type (``"scan"``, ``"channel"``, ``"lima"``), a
        sequence of them, or a callable ``node -> bool``; ``None`` = everything. With
        ``"scan"`` alone, scans' data streams are not read at all (cheap).
        ``from_next=False`` first replays the scans still in Redis (NEW_NODE, and
        END_SCAN for those already ended; their data too for channel/lima filters);
        ``from_next=True`` yields only scans started from now on. ``started_event``
        (anything with ``set()``) is set once the walk has taken its starting point.
        """
        from beacon_ipy.scans.walker import walk_session

        return walk_session(self, include_filter=include_filter, from_next=from_next,
                            stop_handler=stop_handler, timeout=timeout,
                            started_event=started_event, count=count)

    def hold(self, holder: str, ttl: float = DEFAULT_HOLD_TTL, existing: bool = True) -> int:
        """Hold every scan of the session, existing and started while the hold lasts.

        Each scan gets its own hold named ``holder`` (release it per scan with
        ``ScanNode.release`` once saved). Returns the number of existing scans held.
        ``existing=False`` only refreshes the session-level hold (scans started from
        now), leaving the holds of existing scans as they are (e.g. released once saved).
        """
        return int(scripts.run(self._redis, "session_hold", self.name, holder,
                               int(ttl * 1000), 1 if existing else 0))

    def release(self, holder: str, include_scans: bool = False) -> None:
        """Stop holding new scans; with ``include_scans``, also release every scan's hold."""
        scripts.run(self._redis, "session_release", self.name, holder,
                    1 if include_scans else 0)

    def __repr__(self) -> str:
        return f"<SessionNode {self.name}>"


def get_session_node(name: str, redis_url: str | None = None) -> SessionNode:
    """The session node ``name`` (the entry point of the listener API)."""
    return SessionNode(name, redis_url)
