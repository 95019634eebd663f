"""blissdata 2.x, with its gaps wrapped: the only module that knows blissdata's internals.

Everything else in beacon-ipy uses blissdata's public API (``DataStore``, ``Scan``,
streams, ``CursorGroup``) through the functions here. The gaps (measured, NOTES §5;
docs/scan_data.md) and what this module does about each:

1. **RESP3 with redis-py 8**: ``search_existing_scans`` fails (``KeyError: 0``) on RESP3
   replies. :func:`data_store` connects with ``protocol=2``.
2. **Import order under gevent**: blissdata picks its stream sender (gevent or thread
   sink) when it is imported. :func:`data_store` re-picks it from the process's state
   now (a process that patched gevent after importing blissdata gets the gevent sink).
3. **Uninitialised databases**: ``DataStore(url)`` refuses a database that has no
   blissdata protocol key, and ``init_db=True`` refuses a non-empty one (a beacon-ipy
   server also holds channels and settings). :func:`data_store` initialises it once,
   under a lock key, whatever else it holds.
4. **Scan-load race**: ``Scan._load`` reads the JSON and the state in two requests, so a
   scan can load at state >= PREPARED without its streams. :func:`refresh` reloads it
   then, and once more when it reaches CLOSED.
5. **Blocking reads in unpatched processes** freeze greenlets: beacon-ipy never asks
   blissdata to block. It reads with ``block=False`` and waits in one ``XREAD BLOCK``
   on a hub-watched socket (:func:`wakeup_streams`, :mod:`.reader`). Even a
   non-blocking read waits for Redis to answer, and Redis answers only after the
   producer's pipelined batch it is busy with (0.1–2 s of frozen greenlets measured
   under load): readers use :func:`reading_store`, whose sockets are gevent's.
6. **Trimmed streams**: ``view.get_data()`` raises a bare ``IndexNoMoreThereError``.
   :func:`view_data` returns what is left plus the lost range, for a clear error.
7. **Unbounded reads**: ``CursorGroup.read`` asks for 100 entries per stream (a constant
   in blissdata) and decodes them in one go: 100 entries of 100 spectra of 2048 float32 are
   80 MB, and the hub stalled 0.5–2 s on such a read (``bench/saving.py``).
   :func:`bounded_cursor_group` is a ``CursorGroup`` whose reads ask for as many entries as
   fit in :data:`READ_BUDGET` bytes, from the entry sizes its earlier reads met.
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading
import time
import weakref
from typing import Any
from urllib.parse import parse_qsl, urlencode

import gevent

from beacon_ipy.connection import resolve_url

log = logging.getLogger("beacon_ipy.scans")
_stores: dict[str, Any] = {}
_stores_lock = threading.Lock()
_reading_stores: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # hub -> {url: store}
_reloaded: set[str] = set()  # scans reloaded once for the load race (keys are unique)
INIT_LOCK_KEY = "beacon_ipy:blissdata_init_lock"
HISTORY_STREAM = "_SCAN_HISTORY_"
READ_BUDGET = 4 * 2**20
"""Bytes one read of a scan's data streams may bring (gap 7; the pre-blissdata saver's
reads were bounded near 4 MiB too)."""


def data_url(url: str | None = None) -> str:
    """The data Redis URL (``url``, else the configured/embedded one) with ``protocol=2``."""
    if "role" in inspect.signature(resolve_url).parameters:
        resolved = resolve_url(url, role="data")  # the connection layer's data role
    else:
        resolved = resolve_url(url)
    base, _, query = resolved.partition("?")
    params = dict(parse_qsl(query))
    params["protocol"] = "2"
    return f"{base}?{urlencode(params)}"


def _pick_sink() -> None:
    """Make blissdata's stream sender match the process's gevent patching now (gap 2)."""
    from blissdata.streams import event_stream, sink
    from gevent.monkey import is_anything_patched

    wanted = sink.DualStageGeventSink if is_anything_patched() else sink.DualStageThreadSink
    if event_stream.RedisSink is not wanted:
        event_stream.RedisSink = wanted


def data_store(url: str | None = None, *, track: bool = True):
    """A ``blissdata.DataStore`` for the data Redis, shared per URL in this process.

    On the embedded server, this is also where its memory tracker is made sure to run
    (:func:`beacon_ipy.scans.tracker.ensure_tracker`, cheap when repeated); ``track=False``
    is for the tracker itself.
    """
    from blissdata import DataStore

    full = data_url(url)
    if track:
        from beacon_ipy.scans.tracker import ensure_tracker

        ensure_tracker(full)
    _pick_sink()
    with _stores_lock:
        store = _stores.get(full)
    if store is not None:
        return store
    # Never hold the lock across I/O: with gevent patching but real threads (the beacon
    # kernel), a greenlet switching away inside it would block every other greenlet of
    # the thread that asks for a store (a deadlock). Two racers may both create a store;
    # the first one kept wins and the other is dropped.
    ensure_initialised(full)
    created = DataStore(full)
    with _stores_lock:
        return _stores.setdefault(full, created)


def reading_store(url: str | None = None):
    """A ``blissdata.DataStore`` for reading scans in this thread, whose sockets cooperate
    with gevent (gap 5): waiting for a reply lets the thread's other greenlets run.

    One per URL and thread (its sockets belong to the thread's gevent hub), so it must
    not be handed to another thread; :func:`data_store` is the one for producers, whose
    blissdata sender may write from its own thread.
    """
    from blissdata import DataStore

    from beacon_ipy.connection.client import new_client

    full = data_url(url)
    data_store(full)  # initialised, memory tracker
    stores = _reading_stores.setdefault(gevent.get_hub(), {})
    store = stores.get(full)
    if store is None:
        store = DataStore(full)
        store._redis.close()  # its plain connection (and pool) go; ours come
        store._redis = new_client(full)
        stores[full] = store
    return store


def ensure_initialised(url: str, timeout: float = 10.0) -> None:
    """Initialise ``url``'s database for blissdata unless it already is (gap 3)."""
    import redis
    from blissdata import DataStore
    from blissdata.redis_engine.store import _PROTOCOL_KEY

    client = redis.Redis.from_url(url)
    try:
        deadline = time.monotonic() + timeout
        while client.get(_PROTOCOL_KEY) is None:
            if client.set(INIT_LOCK_KEY, b"1", nx=True, ex=30):
                try:
                    if client.get(_PROTOCOL_KEY) is None:
                        _initialise(DataStore, url)
                finally:
                    client.delete(INIT_LOCK_KEY)
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"another process has been initialising the blissdata "
                                   f"database at {url} for {timeout} s; delete the key "
                                   f"{INIT_LOCK_KEY!r} if it died")
            gevent.sleep(0.05)  # another process initialises it (greenlets keep running)
    finally:
        client.close()


def _initialise(datastore_cls, url: str) -> None:
    class _Setup(datastore_cls):
        def _setup_redis_db(self):  # construct without the empty-database check
            pass

    store = _Setup(url, init_db=True)
    real_dbsize = store._redis.dbsize
    store._redis.dbsize = lambda: 0  # blissdata refuses any non-empty database
    try:
        datastore_cls._setup_redis_db(store)
    except Exception as exc:
        raise RuntimeError(f"cannot initialise the blissdata database at {url}: {exc}. "
                           f"It needs the RedisJSON and RediSearch modules (beacon-ipy's "
                           f"embedded server loads them; see docs/connection.md)") from exc
    finally:
        store._redis.dbsize = real_dbsize
        store._redis.close()


def load_scan(store, key: str):
    """``store.load_scan(key)``; raises blissdata's ``ScanNotFoundError`` if gone."""
    return store.load_scan(key)


def refresh(store, scan) -> tuple[Any, bool]:
    """``scan.update(block=False)`` plus the load-race rule (gap 4).

    Returns ``(scan, changed)``; ``scan`` is a reloaded object when it had to be
    reloaded: seen at state >= PREPARED without streams (once: the reload reads the JSON
    after that state was seen, so it has every stream), or newly CLOSED (final info).
    """
    from blissdata import ScanState

    changed = False
    if scan.state < ScanState.CLOSED:
        changed = scan.update(block=False)
    if scan.state >= ScanState.PREPARED and not scan.streams and scan.key not in _reloaded:
        _reloaded.add(scan.key)
        return store.load_scan(scan.key), True
    if changed and scan.state == ScanState.CLOSED:
        return store.load_scan(scan.key), True
    return scan, changed


def session_of(store, key: str) -> str | None:
    """The ``identity.session`` of scan ``key`` without loading it (None if gone)."""
    try:
        value = store._redis.json().get(key, "$.id.session")
    except Exception:  # noqa: BLE001 - a vanished or foreign key: not ours to follow
        return None
    if not value:
        return None
    return value[0]


def history_position(store) -> str:
    """The id of the newest entry of blissdata's scan history ("0-0" if none)."""
    return store.get_last_scan_timetag()


def state_stream_key(scan) -> str:
    """Key of ``scan``'s state stream."""
    return scan._model.state_stream.key()


def state_position(scan) -> str:
    """Id of the last state entry ``scan`` has read (a wake-up read waits after it)."""
    return scan._last_entry_id


def wakeup_streams(group) -> dict[str, str]:
    """``{data stream key: id}``: an ``XREAD`` after these ids returns as soon as any
    active cursor of ``group`` has something new to read."""
    out = {}
    for cursor in group._active_cursors.values():
        index = cursor._ll_index
        out[cursor._ll_stream.key] = f"{index}-0"
    return out


def view_data(view) -> tuple[Any, int]:
    """``(data, lost)``: the data of a numeric view that is still in Redis, and how many
    points at its start were trimmed away (gap 6)."""
    from blissdata.exceptions import IndexNoMoreThereError

    try:
        return view.get_data(), 0
    except IndexNoMoreThereError:
        events = view._events
        return events.data, int(events.nb_expired)


def liveness_key(scan_key: str) -> str:
    """The liveness key of a scan published by beacon-ipy."""
    return f"beacon_ipy:alive:{scan_key}"


def image_references(stream, start: int, stop: int) -> list:
    """``ImageRef``s of images ``start..stop`` of a lima stream, as blissdata computes them
    (file pattern, frames per file and per acquisition): no file or Tango access."""
    from beacon_ipy.scans.events import ImageRef

    refs = stream.get_references(slice(start, stop))
    return [ImageRef(r.file_path, r.data_path, int(r.index)) for r in refs]


def bounded_cursor_group(streams, budget: int = READ_BUDGET):
    """A blissdata ``CursorGroup`` over ``streams`` whose reads bring about ``budget``
    bytes at most (gap 7). Reads ask for one entry per stream until entry sizes are known,
    then for ``budget`` / (sum of the streams' latest bytes per entry; a stream not met
    yet counts as the largest) entries, never more than blissdata's own 100.
    ``group.entries_per_read`` is the current count."""
    return _bounded_group_class()(streams, budget)


@functools.cache
def _bounded_group_class() -> type:
    from blissdata.streams import CursorGroup
    from blissdata.streams.event_stream import EventStream

    expected = ["self", "cursors", "timeout", "count", "last_only_keys"]
    hook = getattr(CursorGroup, "_read_next_events_multi", None)
    if hook is None or list(inspect.signature(hook).parameters) != expected \
            or not hasattr(EventStream, "_decode_entries"):
        log.warning("this blissdata's CursorGroup has changed: reads of scan data are not "
                    "bounded (READ_BUDGET); a large backlog may pause greenlets")

        class UnboundedCursorGroup(CursorGroup):
            def __init__(self, streams, budget: int):
                super().__init__(streams)
                self.budget, self.entries_per_read = budget, 100

        return UnboundedCursorGroup

    class BoundedCursorGroup(CursorGroup):
        def __init__(self, streams, budget: int):
            super().__init__(streams)
            self.budget = budget
            self.entries_per_read = 1  # until entry sizes are known
            self.entry_bytes: dict[str, float] = {}  # ll stream key -> bytes per entry
            for cursor in self._active_cursors.values():
                _count_decoded_entries(cursor._ll_stream)

        def _read_next_events_multi(self, cursors, timeout, count, last_only_keys):
            streams = {key: cursor._ll_stream for key, cursor in cursors.items()}
            before = {key: ll.beacon_ipy_decoded for key, ll in streams.items()}
            out = super()._read_next_events_multi(
                cursors, timeout, min(count, self.entries_per_read), last_only_keys)
            for key, ll in streams.items():
                entries = ll.beacon_ipy_decoded - before[key]
                if entries and key in out:
                    self.entry_bytes[key] = _nbytes(out[key].data) / entries
            if self.entry_bytes:  # a stream not met yet counts as the largest met
                largest = max(self.entry_bytes.values())
                total = sum(self.entry_bytes.get(key, largest) for key in streams)
                self.entries_per_read = max(1, min(count, int(self.budget // max(total, 1))))
            return out

    return BoundedCursorGroup


def _count_decoded_entries(ll_stream) -> None:
    """Make ``ll_stream`` count the entries it decodes (``beacon_ipy_decoded``): blissdata
    reports points, not entries, and the read count is in entries."""
    if hasattr(ll_stream, "beacon_ipy_decoded"):
        return
    decode = ll_stream._decode_entries
    ll_stream.beacon_ipy_decoded = 0

    def counted(entries):
        ll_stream.beacon_ipy_decoded += len(entries)
        return decode(entries)

    ll_stream._decode_entries = counted


def _nbytes(data) -> int:
    nbytes = getattr(data, "nbytes", None)
    if nbytes is not None:
        return int(nbytes)
    return sum(int(getattr(item, "nbytes", 64)) for item in data)
