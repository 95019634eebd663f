"""The walks: a scan's events, and a session's events (scans, and their data if asked).

Both block in ``XREAD BLOCK`` on a connection of their own (:mod:`.reader`), for at most
a check interval: when it passes, the walk checks the producers of the scans it follows
(a scan whose heartbeat key is gone is ended with reason DIED, atomically, by a server
script; the END entry then arrives like any other). No sleeps: every wait is a blocking
read with a deadline.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import gevent
import redis

from beacon_ipy.scans import scripts
from beacon_ipy.scans.entries import ScanDecoder, _s
from beacon_ipy.scans.errors import ScanExpiredError
from beacon_ipy.scans.events import EventType, NewNode
from beacon_ipy.scans.keys import SESSION_EVENTS_MAXLEN
from beacon_ipy.scans.nodes import NodeFilter, ScanNode, SessionNode
from beacon_ipy.scans.reader import BlockingReader, StopHandler, deadline_ms

log = logging.getLogger("beacon_ipy.scans")

NODE_TYPES = ("scan", "channel", "lima")
MAX_CHECK_INTERVAL = 1.0
RECONNECT_TIMEOUT = 30.0
"""A walk that loses its Redis connection retries for this long, then raises."""


def check_interval(heartbeat: float) -> float:
    """How often a walk checks a scan's producer: at most 1 s, half the heartbeat."""
    return max(0.02, min(MAX_CHECK_INTERVAL, heartbeat / 2))


class NodeFilterSpec:
    """``include_filter`` normalised: ``accepts(node)`` and whether data must be read."""

    def __init__(self, include_filter: NodeFilter):
        self.func: Callable[[Any], bool] | None = None
        if include_filter is None:
            self.types = set(NODE_TYPES)
        elif isinstance(include_filter, str):
            self.types = {include_filter}
        elif callable(include_filter):
            self.func = include_filter
            self.types = set(NODE_TYPES)
        else:
            self.types = set(include_filter)
        unknown = self.types - set(NODE_TYPES)
        if unknown:
            raise ValueError(f"include_filter names unknown node types {sorted(unknown)}; "
                             f"use {NODE_TYPES}, a sequence of them, or a callable")
        self.descend = bool(self.types & {"channel", "lima"})
        self.everything = self.func is None and self.types == set(NODE_TYPES)

    def select(self, events: list[tuple]) -> list[tuple]:
        """The ``(event_type, node, data)`` events whose node this filter accepts."""
        if self.everything:
            return events
        return [event for event in events if self.accepts(event[1])]

    def accepts(self, node) -> bool:
        if self.func is not None:
            return bool(self.func(node))
        return node.type in self.types


class _Walk:
    """Common loop state: reader, deadline, stop handler."""

    def __init__(self, url: str, stop_handler: StopHandler | None, timeout: float | None):
        self.reader = BlockingReader(url)
        self.stop_handler = stop_handler
        self.deadline = None if timeout is None else time.monotonic() + timeout
        if stop_handler is not None:
            stop_handler._register(self.reader)

    def finished(self) -> bool:
        if self.stop_handler is not None and self.stop_handler.stopped:
            return True
        return self.deadline is not None and time.monotonic() >= self.deadline

    def read(self, streams: dict, count: int, block_ms: int | None):
        """XREAD; on a lost connection, reconnect (for up to RECONNECT_TIMEOUT s) and retry.

        Returns None when woken by the stop handler or when the wait timed out.
        """
        give_up = None
        while True:
            try:
                return self.reader.xread(streams, count, block_ms)
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
                now = time.monotonic()
                if give_up is None:
                    give_up = now + RECONNECT_TIMEOUT
                    log.warning("walk lost its Redis connection (%s); reconnecting", exc)
                if now > give_up:
                    raise
                if self.finished():
                    return None
                gevent.sleep(0.2)  # reconnection back-off

    def close(self) -> None:
        if self.stop_handler is not None:
            self.stop_handler._unregister(self.reader)
        self.reader.close()


@contextlib.contextmanager
def _unless_disconnected():
    """Skip a periodic check while Redis is unreachable (the next read reconnects)."""
    try:
        yield
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        log.debug("periodic check skipped: %s", exc)


def _declare_dead(redis, session: str, nbs) -> list[int]:
    if not nbs:
        return []
    dead = scripts.run(redis, "declare_dead", session, SESSION_EVENTS_MAXLEN, *nbs)
    for nb in dead:
        log.warning("scan %s of session %r: producer heartbeat lapsed, ended with reason DIED",
                    _s(nb), session)
    return [int(nb) for nb in dead]


def walk_scan(scan: ScanNode, *, after: str | None, wait: bool, include_filter: NodeFilter,
              stop_handler: StopHandler | None, timeout: float | None, started_event,
              count: int) -> Iterator[tuple]:
    flt = NodeFilterSpec(include_filter)
    scan._load_meta(refresh=True)  # raises ScanExpiredError if gone
    interval = check_interval(scan.heartbeat)
    key = scan.keys.data.encode()
    last = after or "0-0"
    decoder = ScanDecoder(scan, key, resumed=after is not None)
    walk = _Walk(scan.redis_url, stop_handler, timeout)
    try:
        if started_event is not None:
            started_event.set()
        next_check = time.monotonic() + interval
        while not walk.finished():
            now = time.monotonic()
            block = deadline_ms(walk.deadline, now, max(0.0, next_check - now)) if wait else None
            reply = walk.read({key: last}, count, block)
            if reply:
                entries = reply[0][1]
                events = decoder.decode(entries, _s(last))
                last = entries[-1][0]
                yield from flt.select(events)
                if decoder.ended:
                    return
            elif not wait:
                return
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + interval
                if not reply:
                    with _unless_disconnected():
                        scan._check_exists()
                        _declare_dead(scan._redis, scan.session, [scan.scan_nb])
    finally:
        walk.close()


def walk_session(session: SessionNode, *, include_filter: NodeFilter, from_next: bool,
                 stop_handler: StopHandler | None, timeout: float | None, started_event,
                 count: int) -> Iterator[tuple]:
    flt = NodeFilterSpec(include_filter)
    client = session._redis
    events_key = session.keys.events.encode()
    with client.pipeline(transaction=True) as pipe:
        pipe.zrange(session.keys.scans, 0, -1)
        pipe.xrevrange(session.keys.events, "+", "-", count=1)
        members, last_entry = pipe.execute()
    session_last: Any = last_entry[0][0] if last_entry else b"0-0"
    scans: dict[int, ScanNode] = {}  # announced, not ended
    followed: dict[bytes, list] = {}  # data key -> [last id, decoder, scan]
    walk = _Walk(session.redis_url, stop_handler, timeout)

    def announce(nb: int, cursor: str):
        scan = ScanNode(session.name, nb, session.redis_url)
        try:
            meta = scan._load_meta()
            _ = scan.info
        except ScanExpiredError:
            return
        scans[nb] = scan
        if flt.accepts(scan):
            yield EventType.NEW_NODE, scan, NewNode(cursor)
        if flt.descend:
            dkey = scan.keys.data.encode()
            followed[dkey] = [b"0-0", ScanDecoder(scan, dkey), scan]
        elif meta.get(b"state") == b"ENDED":
            yield from finish(nb, cursor)

    def finish(nb: int, cursor: str):
        scan = scans.pop(nb, None)
        if scan is None:
            return
        try:
            end = scan.end
        except ScanExpiredError:
            return
        if end is not None and flt.accepts(scan):
            yield EventType.END_SCAN, scan, dataclasses.replace(end, cursor=cursor)

    try:
        if started_event is not None:
            started_event.set()
        if not from_next:
            for m in members:
                yield from announce(int(m), "0-0")
        interval = MAX_CHECK_INTERVAL
        next_check = time.monotonic() + interval
        while not walk.finished():
            now = time.monotonic()
            streams = {events_key: session_last}
            streams.update({k: v[0] for k, v in followed.items()})
            block = deadline_ms(walk.deadline, now, max(0.0, next_check - now))
            reply = walk.read(streams, count, block)
            for key, entries in reply or ():
                if key == events_key:
                    cursor = _s(session_last)
                    session_last = entries[-1][0]
                    for _, fields in entries:
                        d = {fields[k]: fields[k + 1] for k in range(0, len(fields) - 1, 2)}
                        try:
                            kind, nb = d.get(b"t"), int(d.get(b"nb", b""))
                        except ValueError:
                            log.warning("skipping malformed session event %r", fields[:6])
                            continue
                        if kind == b"new_scan":
                            # (A number seen before means the server restarted empty.)
                            yield from announce(nb, cursor)
                        elif kind == b"end_scan" and not flt.descend:
                            yield from finish(nb, cursor)
                    continue
                state = followed.get(key)
                if state is None:
                    continue
                cursor = _s(state[0])
                state[0] = entries[-1][0]
                decoder, scan = state[1], state[2]
                events = decoder.decode(entries, cursor)
                yield from flt.select(events)
                if decoder.ended:
                    del followed[key]
                    scans.pop(scan.scan_nb, None)
            if time.monotonic() >= next_check:
                if scans:
                    interval = min(check_interval(s.heartbeat) for s in scans.values())
                next_check = time.monotonic() + interval
                with _unless_disconnected():
                    for nb in list(scans):
                        if not scans[nb].exists():
                            # Expired or trimmed while followed (e.g. a dead scan nobody
                            # ended, or the server restarted empty).
                            followed.pop(scans[nb].keys.data.encode(), None)
                            scans.pop(nb)
                    _declare_dead(client, session.name, list(scans))
    finally:
        walk.close()
