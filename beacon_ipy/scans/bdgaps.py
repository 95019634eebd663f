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
   on a hub-watched socket (:func:`wakeup_streams`, :mod:`.reader`).
6. **Trimmed streams**: ``view.get_data()`` raises a bare ``IndexNoMoreThereError``.
   :func:`view_data` returns what is left plus the lost range, for a clear error.
"""

from __future__ import annotations

import inspect
import threading
import time
from typing import Any
from urllib.parse import parse_qsl, urlencode

from beacon_ipy.connection import resolve_url

_stores: dict[str, Any] = {}
_stores_lock = threading.Lock()
_reloaded: set[str] = set()  # scans reloaded once for the load race (keys are unique)
INIT_LOCK_KEY = "beacon_ipy:blissdata_init_lock"
HISTORY_STREAM = "_SCAN_HISTORY_"


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
            time.sleep(0.05)  # another process initialises it
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
