"""The runner: follows a session (or one scan) on blissdata and drives ScanConsumers.

Its rules (session following, cursors, load race, back-off, dead producers, deletion,
trimmed data, stopping) are documented in :mod:`beacon_ipy.scans.consumer`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from typing import Any

import gevent
import numpy as np
import redis

from beacon_ipy.scans import bdgaps
from beacon_ipy.scans.consumer import DEFAULT_IDLE_LIMIT, ScanConsumer
from beacon_ipy.scans.errors import ScanDataTrimmedError
from beacon_ipy.scans.events import (
    EndReason,
    ScanEnd,
    make_channel_data,
    make_image_data,
)
from beacon_ipy.scans.handle import ScanHandle
from beacon_ipy.scans.memory import DEFAULT_HOLD_TTL, release_hold, set_hold
from beacon_ipy.scans.reader import BlockingReader, StopHandler

log = logging.getLogger("beacon_ipy.scans")

RECONNECT_TIMEOUT = 30.0
CHECK_INTERVAL = 0.5
"""How often (s) liveness keys, idle limits and the scan history are checked while busy."""
IDLE_LIMIT_ENV = "BEACON_IPY_SCAN_IDLE_LIMIT"


def default_idle_limit() -> float | None:
    value = os.environ.get(IDLE_LIMIT_ENV)
    if value is None:
        return DEFAULT_IDLE_LIMIT
    if value.strip().lower() in ("", "none", "never", "0"):
        return None
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{IDLE_LIMIT_ENV}={value!r} is not a number of seconds "
                         f"(or 'never')") from None


class _Followed:
    """A scan the runner follows: handle, cursors, counts, consumers that accepted it."""

    def __init__(self, handle: ScanHandle, consumers: list[ScanConsumer]):
        self.handle = handle
        self.consumers = consumers
        self.group: Any = None
        self.descs: dict[str, Any] = {}
        self.counts: dict[str, int] = {}
        self.eos = False
        self.last_activity = time.monotonic()

    @property
    def liveness_key(self) -> str | None:
        """The producer's liveness key (beacon-ipy producers, from PREPARED on)."""
        info = self.handle.info.get("beacon_ipy")
        return info.get("liveness_key") if isinstance(info, dict) else None


class ScanRunner:
    """Follows scans and calls its consumers' methods (see :mod:`.consumer`).

    ``session``: follow that session's scans (or ``scan_key``: only that scan).
    ``url``: the data Redis (default: the configured/embedded one). ``from_next``: only
    scans created from now on. ``idle_limit``: the dead-producer limit for foreign
    producers (s, None = never; default from env ``BEACON_IPY_SCAN_IDLE_LIMIT`` or
    :data:`~beacon_ipy.scans.consumer.DEFAULT_IDLE_LIMIT`). ``stop_handler``: a
    StopHandler whose ``stop()`` ends ``run()``. ``timeout``: ``run()`` returns after
    that many seconds. ``started_event``: set once the runner has taken its starting
    point (scans created after that are delivered). ``hold_as``: a saver's name; the
    memory tracker then never trims points of followed scans this runner has not read
    (:mod:`beacon_ipy.scans.memory`).
    """

    def __init__(self, consumers: ScanConsumer | Sequence[ScanConsumer], *,
                 session: str | None = None, scan_key: str | None = None,
                 url: str | None = None, from_next: bool = True,
                 idle_limit: float | None | str = "default",
                 reconnect_timeout: float = RECONNECT_TIMEOUT,
                 stop_handler: StopHandler | None = None, timeout: float | None = None,
                 started_event=None, hold_as: str | None = None,
                 hold_ttl: float = DEFAULT_HOLD_TTL):
        if (session is None) == (scan_key is None):
            raise ValueError("give ScanRunner exactly one of session= or scan_key=")
        self.consumers = [consumers] if isinstance(consumers, ScanConsumer) else list(consumers)
        if not self.consumers or not all(isinstance(c, ScanConsumer) for c in self.consumers):
            raise TypeError("ScanRunner needs ScanConsumer instances")
        self.session = session
        self.scan_key = scan_key
        self.url = bdgaps.data_url(url)
        self.from_next = from_next
        self.idle_limit = default_idle_limit() if idle_limit == "default" else idle_limit
        self.reconnect_timeout = reconnect_timeout
        self.stop_handler = stop_handler or StopHandler()
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.started_event = started_event
        self.hold_as = hold_as
        self.hold_ttl = hold_ttl
        self.store: Any = None
        self.followed: dict[str, _Followed] = {}
        self.since: str | None = None
        self._reader = BlockingReader(self.url)
        self._started = False
        self._finished = False
        self._next_check = 0.0
        self._poll_history = True
        self.busy = False

    # -- public ----------------------------------------------------------------------
    def run(self) -> None:
        """Follow scans until stopped, timed out, or (``scan_key``) the scan ended."""
        self.stop_handler._register(self._reader)
        try:
            while self.step():
                if self.busy:
                    gevent.sleep(0)  # a backlog is read in bounded steps: let others run
        finally:
            self.stop_handler._unregister(self._reader)
            self.close()

    def close(self) -> None:
        """Release the runner's private connection (``run()`` does it when it returns)."""
        self._reader.close()

    def spawn(self) -> gevent.Greenlet:
        """``run()`` in a new greenlet, returned."""
        return gevent.spawn(self.run)

    def stop(self) -> None:
        """End ``run()`` from any greenlet or thread."""
        self.stop_handler.stop()
        self._reader.wake()

    @property
    def finished(self) -> bool:
        return (self._finished or self.stop_handler.stopped
                or (self.deadline is not None and time.monotonic() >= self.deadline))

    def step(self, block: bool = True) -> bool:
        """Process what is available (waiting for something if ``block``); False once
        the runner is finished."""
        if self.finished:
            return False
        give_up = None
        delay = 0.1
        while True:
            try:
                busy = self._step()
                self.busy = busy
                if not busy and block and not self.finished:
                    self._wait()
                break
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
                now = time.monotonic()
                if give_up is None:
                    give_up = now + self.reconnect_timeout
                    log.warning("scan runner lost its Redis connection (%s); retrying", exc)
                if now > give_up:
                    raise
                if self.finished:
                    return False
                gevent.sleep(delay)  # back-off
                delay = min(2.0, delay * 2)
        return not self.finished

    # -- one pass ----------------------------------------------------------------------
    def _step(self) -> bool:
        if not self._started:
            self._start()
        busy = False
        now = time.monotonic()
        check = now >= self._next_check
        if check:
            self._next_check = now + CHECK_INTERVAL
        if self.session is not None and (self._poll_history or check):
            self._poll_history = False
            busy |= self._discover()
        for key in list(self.followed):
            busy |= self._progress(self.followed[key], check)
        if check and self.hold_as is not None:
            self._refresh_holds()
        if self.scan_key is not None and not self.followed:
            self._finished = True
        return busy

    def _start(self) -> None:
        from blissdata.exceptions import ScanNotFoundError

        self.store = bdgaps.reading_store(self.url)
        if self.scan_key is not None:
            try:
                self._follow(self.scan_key)
            except ScanNotFoundError:
                self._finished = True
        elif self.from_next:
            self.since = bdgaps.history_position(self.store)
        else:
            self.since, keys = self.store.search_existing_scans(session=self.session)
            for key in sorted(keys):  # ULIDs: creation order
                try:
                    self._follow(key)
                except ScanNotFoundError:
                    continue
        self._started = True
        if self.started_event is not None:
            self.started_event.set()

    def _discover(self) -> bool:
        from blissdata.exceptions import NoScanAvailable, ScanNotFoundError

        found = False
        while True:
            try:
                self.since, key = self.store.get_next_scan(since=self.since, block=False)
            except NoScanAvailable:
                return found
            if key in self.followed or bdgaps.session_of(self.store, key) != self.session:
                continue
            try:
                self._follow(key)
                found = True
            except ScanNotFoundError:
                continue

    def _follow(self, key: str) -> None:
        scan = bdgaps.load_scan(self.store, key)
        handle = ScanHandle(self.store, scan)
        accepted = [c for c in self.consumers if c.new_scan(handle) is not False]
        if accepted:
            self.followed[key] = _Followed(handle, accepted)
            if self.hold_as is not None:  # held from the start: nothing trimmed unread
                set_hold(self.store._redis, key, self.hold_as, {}, self.hold_ttl)

    # -- one scan --------------------------------------------------------------------
    def _progress(self, f: _Followed, check: bool) -> bool:
        from blissdata import ScanState
        from blissdata.exceptions import EndOfStream, ScanNotFoundError

        h = f.handle
        busy = False
        if f.group is None or f.eos or check:
            try:
                scan, changed = bdgaps.refresh(self.store, h.blissdata_scan)
            except ScanNotFoundError:
                self._end(f, EndReason.DELETION, "deleted", "the scan was deleted from Redis")
                return True
            if changed:
                h.replace_scan(scan)
                f.last_activity = time.monotonic()
                busy = True
        if f.group is None and h.state >= ScanState.PREPARED:
            self._open_streams(f)
            busy = True
        if f.group is not None and not f.eos:
            try:
                views = f.group.read(block=False)
            except EndOfStream:
                views, f.eos = {}, True
            if views:
                f.last_activity = time.monotonic()
                busy = True
                for stream, view in views.items():
                    self._deliver(f, stream, view)
        if h.state == ScanState.CLOSED and (f.eos or f.group is None or not f.descs):
            if f.group is not None and not f.eos:
                return busy  # closed: the seals are there, read them first
            reason = EndReason.from_info(h.info.get("end_reason", "SUCCESS"))
            self._end(f, reason, "producer", "")
            return True
        if check and not busy:
            self._check_alive(f)
        return busy

    def _open_streams(self, f: _Followed) -> None:
        h = f.handle
        descs = h.streams
        for name in h.stream_names():
            f.descs[name] = descs[name]
            f.counts[name] = 0
            for c in f.consumers:
                c.new_stream(h, descs[name])
        streams = h.blissdata_scan.streams
        if self.hold_as is not None:
            self._refresh_holds()
        if not any(getattr(c, "wants_data", True) for c in f.consumers):
            streams = {}  # nobody reads data (e.g. a walk filtered on "scan"): no cursors
        f.group = bdgaps.bounded_cursor_group(streams) if streams else None
        f.eos = not streams

    def _deliver(self, f: _Followed, stream: Any, view: Any) -> None:
        h = f.handle
        desc = f.descs[stream.name]
        start = view.index
        if desc.is_image:
            stop = start + len(view)
            refs = (tuple(bdgaps.image_references(stream, start, stop))
                    if desc.files is not None else ())
            block = make_image_data(start, stop, refs, f"{stream.name}@{stop}")
        else:
            data, lost = bdgaps.view_data(view)
            if lost:
                err = ScanDataTrimmedError(h.describe(), stream.name, start, start + lost)
                for c in f.consumers:
                    c.data_lost(h, desc, err)
                start += lost
            arr = np.asarray(data).reshape((-1, *desc.shape))
            if not len(arr):
                return
            stop = start + len(arr)
            block = make_channel_data(start, stop, arr, f"{stream.name}@{stop}")
        f.counts[stream.name] = block.stop
        for c in f.consumers:
            c.new_data(h, desc, block)

    def _check_alive(self, f: _Followed) -> None:
        from blissdata import ScanState

        h = f.handle
        if h.state == ScanState.CLOSED:
            return
        key = f.liveness_key
        if key is not None:
            if not self.store._redis.exists(key):
                self._end(f, EndReason.DIED, "watchdog",
                          f"the beacon-ipy producer's liveness key {key} expired "
                          f"before the scan was closed: the producer died or was frozen")
        elif self.idle_limit is not None and \
                time.monotonic() - f.last_activity > self.idle_limit:
            self._end(f, EndReason.DIED, "watchdog",
                      f"no new state or data for {self.idle_limit:g} s (idle limit for "
                      f"non beacon-ipy producers, env {IDLE_LIMIT_ENV})")

    def _refresh_holds(self) -> None:
        for f in self.followed.values():
            streams = f.handle.blissdata_scan.streams
            progress = {streams[n].key: f.counts.get(n, 0) for n, d in f.descs.items()
                        if n in streams and not d.is_image}
            set_hold(self.store._redis, f.handle.key, self.hold_as, progress, self.hold_ttl)

    def _end(self, f: _Followed, reason: EndReason, by: str, detail: str) -> None:
        self.followed.pop(f.handle.key, None)
        if self.hold_as is not None:
            release_hold(self.store._redis, f.handle.key, self.hold_as)
        if detail:
            log.warning("scan %s ended with reason %s: %s", f.handle.describe(), reason.value,
                        detail)
        end = ScanEnd(reason.value, by, time.time(), dict(f.counts), dict(f.handle.info),
                      "", detail)
        f.handle.end = end
        for c in f.consumers:
            c.end_scan(f.handle, end)

    # -- waiting ---------------------------------------------------------------------
    def _wait(self) -> None:
        streams: dict[str, str] = {}
        if self.session is not None:
            streams[bdgaps.HISTORY_STREAM] = self.since or "0-0"
        for f in self.followed.values():
            scan = f.handle.blissdata_scan
            streams[bdgaps.state_stream_key(scan)] = bdgaps.state_position(scan)
            if f.group is not None and not f.eos:
                streams.update(bdgaps.wakeup_streams(f.group))
        now = time.monotonic()
        left = max(0.001, self._next_check - now)
        if self.deadline is not None:
            left = min(left, max(0.001, self.deadline - now))
        if not streams:
            gevent.sleep(left)
            return
        reply = self._reader.xread({k.encode(): v.encode() for k, v in streams.items()},
                                   1, max(1, int(left * 1000)))
        data_keys = {k for f in self.followed.values() if f.group is not None and not f.eos
                     for k in bdgaps.wakeup_streams(f.group)}
        for key, _ in reply or ():
            name = key.decode()
            if name == bdgaps.HISTORY_STREAM:
                self._poll_history = True
            elif name not in data_keys:
                self._next_check = 0.0  # a state change: refresh the scans at once

