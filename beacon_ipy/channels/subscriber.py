"""The subscriber socket of a bus: subscriptions, and queries published behind them.

One redis-py :class:`~redis.connection.Connection` (RESP3 when the server has it), used
only through redis-py's public methods (``connect``, ``send_command``, ``send_packed_command``,
``read_response``, ``disconnect``). Its one :meth:`SubscriberConnection.connect`
re-subscribes every channel of the bus, so a first connection and a reconnection are
the same code (as redis-py's ``PubSub.on_connect``).

Why RESP3: a RESP3 connection may also PUBLISH while subscribed, so a query goes out on
this socket right behind its channel's SUBSCRIBE. Redis runs one connection's commands in
order, so the subscription is active when the PUBLISH is counted: one round trip instead
of two for a fresh channel. A server without RESP3 (Redis < 6) gets RESP2 and the
two-round-trip query (:mod:`.queries`).

RESP3 pub/sub messages are pushes, which redis-py passes to its push handler; from
redis-py 8.2 (redis/redis-py#4231) that handler no longer formats every message into a
discarded debug string, so the default one is used (hence ``redis>=8.2``).

Nothing here spawns greenlets or reconnects by itself: :mod:`.listener` does.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable, Iterable
from typing import Any

import gevent.event
import gevent.lock
import redis

from beacon_ipy.channels.resp import CONNECTION_ERRORS, pack_publish
from beacon_ipy.connection import new_connection, redacted

log = logging.getLogger("beacon_ipy.channels")



class SubscriberConnection:
    """The subscriber socket of one bus (see the module docstring)."""

    def __init__(self, url: str, names: Callable[[], Iterable[str]],
                 warn: Callable[[str, str, str], None]):
        self.url = url
        self.resp3 = True
        self.connected = gevent.event.Event()
        self._names = names
        self._warn = warn
        self._conn = self._new_connection(protocol=3)
        self._write_lock = gevent.lock.Semaphore()
        self._replies: collections.deque[Callable[[int], None]] = collections.deque()
        self._subscribed: dict[str, gevent.event.Event] = {}

    def _new_connection(self, protocol: int):
        return new_connection(self.url, socket_timeout=None, socket_connect_timeout=5,
                              protocol=protocol, socket_read_size=1 << 20)

    # -- connection ------------------------------------------------------------------------
    def connect(self) -> None:
        """Connect and subscribe to every channel of the bus (first time and after a loss)."""
        self._replies.clear()  # replies to a dead connection never come
        try:
            self._conn.connect()
        except redis.ResponseError:
            if not self.resp3:
                raise
            # No HELLO 3 (Redis < 6): RESP2 subscriber, queries publish elsewhere.
            log.info("Redis at %s has no RESP3; using RESP2", redacted(self.url))
            self.resp3 = False
            self._conn = self._new_connection(protocol=2)
            self._conn.connect()
        # Connected first: a channel added from now on subscribes itself, and one added
        # before is in the list below (a double SUBSCRIBE is harmless).
        self.connected.set()
        names = list(self._names())
        if names:
            with self._write_lock:
                self._conn.send_command("SUBSCRIBE", *names, check_health=False)

    def disconnect(self) -> None:
        """Drop the socket; every subscription must be confirmed again."""
        self.connected.clear()
        for event in self._subscribed.values():
            event.clear()
        self._conn.disconnect()

    # -- subscriptions ---------------------------------------------------------------------
    def subscribe(self, name: str) -> None:
        """Subscribe to ``name`` now if connected (else :meth:`connect` will)."""
        self._subscribed.setdefault(name, gevent.event.Event())
        self._send("SUBSCRIBE", name)

    def unsubscribe(self, name: str) -> None:
        self._subscribed.pop(name, None)
        self._send("UNSUBSCRIBE", name)

    def wait_subscribed(self, name: str, timeout: float | None) -> bool:
        """True once the server confirmed the subscription to ``name``."""
        event = self._subscribed.get(name)
        return event is not None and event.wait(timeout)

    def _send(self, command: str, name: str) -> None:
        if not self.connected.is_set():
            return  # connect() subscribes every channel
        try:
            with self._write_lock:
                self._conn.send_command(command, name, check_health=False)
        except CONNECTION_ERRORS as exc:
            # The listener notices the broken connection and reconnects, which
            # resubscribes every registered channel, this one included.
            log.debug("%s %s deferred: %s", command, name, exc)

    def publish(self, name: str, payload: bytes, on_count: Callable[[int], None]) -> bool:
        """PUBLISH behind the subscriptions (RESP3 only); ``on_count(subscribers)`` follows.

        False if this socket cannot publish now (RESP2, or not connected): publish
        elsewhere. True if sent, or if the send failed on a broken connection (the
        caller re-runs its query after the reconnection).
        """
        if not (self.resp3 and self.connected.is_set()):
            return False
        try:
            with self._write_lock:
                self._replies.append(on_count)
                self._conn.send_packed_command([pack_publish(name, payload)],
                                               check_health=False)
        except CONNECTION_ERRORS:
            pass  # the listener reconnects; the query is re-run then
        return True

    # -- reading ---------------------------------------------------------------------------
    def read(self) -> tuple[str, bytes] | None:
        """Block for the next response; ``(channel, payload)`` for a message, else None.

        Command replies (a query's PUBLISH count) and subscription confirmations are
        handled here. Raises one of :data:`CONNECTION_ERRORS` when the socket breaks.
        """
        try:
            response: Any = self._conn.read_response(push_request=True)
        except redis.ResponseError as exc:  # an error reply to one of our commands
            if self._replies:
                self._replies.popleft()
            self._warn("reply", "", f"Redis refused a command: {exc}")
            return None
        if isinstance(response, list):  # a push (hiredis: a list subclass)
            kind = response[0]
            if kind == b"message":
                return response[1].decode("utf-8", "replace"), response[2]
            if kind == b"subscribe":
                event = self._subscribed.get(response[1].decode("utf-8", "replace"))
                if event is not None:
                    event.set()
            return None
        # A command reply (RESP3: a query's PUBLISH count).
        if self._replies:
            on_count = self._replies.popleft()
            try:
                on_count(int(response))
            except Exception:  # noqa: BLE001 - the listener must outlive any one reply
                log.exception("channel bus: failed to handle the reply %r", response)
        return None
