"""The per-process, per-server channel bus: one subscriber socket, one publisher socket.

A :class:`Bus` owns, for one Redis URL in one process:

- a **listener** greenlet reading the subscriber connection: it decodes each message
  safely (:mod:`.wire`), updates channel state, answers every query, and runs the
  callbacks (isolated: one that raises is logged). A broken message is logged and
  dropped; the listener goes on. A callback that waits on beacon-ipy (reads another
  channel, flushes) makes a new listener take over first (:meth:`Bus.before_wait`),
  so waiting inside a callback never deadlocks as it does in BLISS;
- a **sender** greenlet writing the publisher connection: pending channel values,
  event batches, queries and replies go out pipelined, so rapid sets coalesce (only the
  latest value of a channel is sent) and events posted in a loop travel as one list;
- **reconnection**: if the connection drops or the server restarts, the listener
  reconnects with back-off, re-subscribes every channel, re-announces every value this
  process holds and re-runs unfinished queries; pending sends are kept and retried
  (event batches are delivered at least once across a reconnection).
"""

from __future__ import annotations

import collections
import itertools
import logging
import math
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import gevent
import gevent.event
import gevent.lock
import redis

from beacon_ipy.channels import wire
from beacon_ipy.connection import check_reachable, new_connection, redacted, resolve_url

if TYPE_CHECKING:
    from beacon_ipy.channels.channel import BaseChannel

log = logging.getLogger("beacon_ipy.channels")

_RECONNECT_DELAYS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0)
_WARN_EVERY = 10.0  # seconds between repeated warnings of the same kind and channel


class _PendingQuery:
    """A query in flight: how many replies to expect, and the first value received."""

    def __init__(self, name: str):
        self.name = name
        self.id = uuid.uuid4().hex
        self.expected: int | None = None  # replies still expected, None until published
        self.value: wire.WireValue | None = None
        self.done = gevent.event.Event()

    def on_published(self, subscribers: int) -> None:
        # Every subscriber answers, ourselves included; we need not hear our own answer
        # (we query because we hold nothing), so expect one fewer.
        self.expected = (self.expected or 0) + subscribers - 1
        if self.expected <= 0:
            self.done.set()

    def on_reply(self, value: wire.WireValue | None) -> None:
        if self.done.is_set():
            return
        if value is not None:
            self.value = value
            self.done.set()
            return
        if self.expected is not None:
            self.expected -= 1
            if self.expected <= 0:
                self.done.set()


class _Outgoing:
    """One message waiting for the sender, with an optional PUBLISH-count consumer.

    ``kind`` says what to do with it if the connection breaks before it is written:
    values and event batches are resent; queries are re-run and replies dropped by
    :meth:`Bus._after_reconnect` (the queriers ask again).
    """

    __slots__ = ("name", "payload", "on_count", "kind")

    def __init__(self, name: str, payload: bytes | Callable[[], bytes | None],
                 on_count: Callable[[int], None] | None = None, kind: str = "value"):
        self.name = name
        self.payload = payload
        self.on_count = on_count
        self.kind = kind


class Bus:
    """Channels of one process on one Redis server (see the module docstring)."""

    _instances: dict[str, Bus] = {}

    @classmethod
    def get(cls, url: str | None = None) -> Bus:
        """The bus for ``url`` (resolved: argument > BEACON_REDIS_URL > embedded)."""
        resolved = resolve_url(url)
        bus = cls._instances.get(resolved)
        if bus is None or bus.closed:
            check_reachable(resolved)  # a clear error now rather than silent retries
            bus = cls._instances[resolved] = cls(resolved)
        return bus

    @classmethod
    def instances(cls) -> list[Bus]:
        """The open buses of this process."""
        return [bus for bus in cls._instances.values() if not bus.closed]

    @classmethod
    def existing(cls, url: str | None = None) -> Bus | None:
        """The open bus for ``url`` if this process has one; never creates or connects."""
        from beacon_ipy.connection import configured_url

        key = configured_url(url)
        if key is None:
            from beacon_ipy.connection.embedded import status

            key = status().url
        bus = cls._instances.get(key)
        return bus if bus is not None and not bus.closed else None

    @classmethod
    def close_all(cls) -> None:
        """Close every bus of this process (tests, interpreter shutdown)."""
        for bus in list(cls._instances.values()):
            bus.close()
        cls._instances.clear()

    def __init__(self, url: str):
        self.url = url
        self.closed = False
        self.channels: dict[str, BaseChannel] = {}
        # RESP3 lets the subscriber connection also PUBLISH, so a query goes out on the
        # same socket right behind its SUBSCRIBE: one round trip instead of two. Servers
        # older than Redis 6 get RESP2 (and the two-round-trip query).
        self._resp3 = True
        self._sub_conn = self._new_sub_conn(protocol=3)
        self._sub_replies: collections.deque[Callable[[Any], None]] = collections.deque()
        self._sub_write_lock = gevent.lock.Semaphore()
        self._query_conn = new_connection(url, socket_timeout=10, socket_connect_timeout=5)
        self._query_lock = gevent.lock.Semaphore()
        self._subscribed: dict[str, gevent.event.Event] = {}
        self._connected = gevent.event.Event()
        self._queries: dict[str, _PendingQuery] = {}
        # name -> outgoing value (coalesced); other messages in order.
        self._pending_values: dict[str, _Outgoing] = {}
        self._pending_other: list[_Outgoing] = []
        self._send_event = gevent.event.Event()
        self._sending = False
        self._unread: list[_Outgoing] = []
        self._drained = gevent.event.Event()
        self._drained.set()
        self._pub_ready = False  # the sender connected the publisher connection
        self._pub_conn = new_connection(url, socket_timeout=10, socket_connect_timeout=5)
        self._last_ts = 0.0
        self._warned: dict[tuple[str, str], float] = {}
        self.reconnections = 0
        self.listener_handoffs = 0
        self._listener = gevent.spawn(self._listen_forever)
        self._listener.name = "beacon-channels-listen"
        self._sender = gevent.spawn(self._send_forever)
        self._sender.name = "beacon-channels-send"

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{len(self.channels)} channels"
        return f"<Bus {redacted(self.url)} ({state})>"

    # -- time --------------------------------------------------------------------------
    def next_timestamp(self) -> float:
        """A wall-clock timestamp strictly greater than any this bus handed out before.

        BLISS receivers drop values not newer than what they hold, so two sets within
        one clock tick must still be ordered.
        """
        ts = time.time()
        if ts <= self._last_ts:
            ts = math.nextafter(self._last_ts, math.inf)
        self._last_ts = ts
        return ts

    # -- channels ------------------------------------------------------------------------
    def add(self, channel: BaseChannel) -> None:
        """Register ``channel`` and subscribe to its name (does not wait)."""
        self._check_open()
        self.channels[channel.name] = channel
        self._subscribed.setdefault(channel.name, gevent.event.Event())
        if self._connected.is_set():
            self._send_subscribe("SUBSCRIBE", channel.name)

    def remove(self, channel: BaseChannel) -> None:
        """Forget ``channel`` and unsubscribe from its name."""
        if self.channels.get(channel.name) is channel:
            del self.channels[channel.name]
            self._subscribed.pop(channel.name, None)
            self._pending_values.pop(channel.name, None)
            if self._connected.is_set():
                self._send_subscribe("UNSUBSCRIBE", channel.name)

    def _new_sub_conn(self, protocol: int):
        conn = new_connection(self.url, socket_timeout=None, socket_connect_timeout=5,
                              protocol=protocol, socket_read_size=1 << 20)
        # redis-py's default pub/sub push handler formats every message into a debug
        # string (str() of the whole payload) even with logging off: 3 ms for a 17k-event
        # batch. We handle pushes ourselves.
        parser = getattr(conn, "_parser", None)
        if parser is not None and hasattr(parser, "pubsub_push_handler_func"):
            parser.pubsub_push_handler_func = _identity
        return conn

    def wait_subscribed(self, name: str, timeout: float | None) -> bool:
        self.before_wait()
        event = self._subscribed.get(name)
        return event is not None and event.wait(timeout)

    def _send_subscribe(self, command: str, name: str) -> None:
        if not self._connected.is_set():
            return  # the listener resubscribes every channel when it reconnects
        try:
            with self._sub_write_lock:
                self._sub_conn.send_command(command, name, check_health=False)
        except (redis.ConnectionError, OSError) as exc:
            # The listener notices the broken connection, reconnects and resubscribes
            # to every registered channel, this one included.
            log.debug("subscribe %s deferred: %s", name, exc)

    # -- sending -------------------------------------------------------------------------
    # One publisher connection. When it is idle (nothing queued, no reply outstanding),
    # a message is written at once from the caller's greenlet (the lowest latency);
    # otherwise it is queued for the sender greenlet, which writes everything queued
    # as one pipeline per round trip. That queue is where rapid sets coalesce and
    # events posted in a loop become one batch.
    def publish_value(self, name: str, payload: bytes | Callable[[], bytes | None]) -> None:
        """Send ``name``'s latest value; an older still-queued value of it is replaced."""
        item = _Outgoing(name, payload)
        if not self._write_now(item):
            self._pending_values[name] = item
            self._drained.clear()
            self._send_event.set()

    def publish_other(self, name: str, payload: bytes | Callable[[], bytes | None],
                      on_count: Callable[[int], None] | None = None,
                      kind: str = "events") -> None:
        """Send a message that must not be coalesced (event batch, reply)."""
        item = _Outgoing(name, payload, on_count, kind)
        if not self._write_now(item):
            self._pending_other.append(item)
            self._drained.clear()
            self._send_event.set()

    def _write_now(self, item: _Outgoing) -> bool:
        """Write ``item`` immediately if the publisher is idle; False if it must queue."""
        if (self._sending or not self._pub_ready or self._pending_values
                or self._pending_other or self.closed):
            return False
        payload = item.payload() if callable(item.payload) else item.payload
        if payload is None:
            return True
        item.payload = payload
        self._sending = True
        self._drained.clear()
        # Queued for reply-reading before the write (which may yield), but the sender
        # is woken only after it: it must not read while we connect or write.
        self._unread.append(item)
        try:
            self._pub_conn.send_command("PUBLISH", item.name, payload, check_health=False)
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            # Only the sender reconnects (a handshake reads replies, which must not
            # interleave with its reads); until then everything queues.
            self._pub_ready = False
            if item in self._unread:
                self._unread.remove(item)
            self._sending = False
            self._send_event.set()
            return False
        self._send_event.set()
        return True

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Wait until every queued message has been written; False on timeout."""
        if gevent.getcurrent() is self._sender:
            return True
        self.before_wait()
        return self._drained.wait(timeout)

    def _send_forever(self) -> None:
        conn = self._pub_conn
        while not self.closed:
            if not self._pub_ready:
                # Connect here, never in a direct write: a connection handshake reads
                # replies, which must not interleave with the sender's own reads.
                try:
                    conn.connect()
                except (redis.ConnectionError, redis.TimeoutError, OSError):
                    gevent.sleep(0.05)  # the listener reports and retries the outage
                    continue
                self._pub_ready = True
            self._send_event.wait()
            self._send_event.clear()
            unread, self._unread = self._unread, []
            batch = list(self._pending_values.values())
            self._pending_values.clear()
            batch += self._pending_other
            self._pending_other = []
            self._sending = True
            try:
                self._read_replies(conn, unread)
                self._write_batch(conn, batch)
            except Exception as exc:  # noqa: BLE001 - the sender must survive anything
                if isinstance(exc, (redis.ConnectionError, redis.TimeoutError, OSError)):
                    log.info("channel bus on %s: will resend after %s", redacted(self.url),
                             exc)
                else:
                    log.exception("channel bus on %s: sending failed", redacted(self.url))
                # Whatever happened, the connection's state is unknown: start afresh.
                self._pub_ready = False
                conn.disconnect()
                self._requeue(unread + batch)
                gevent.sleep(0.01)  # let the listener notice a broken connection
                self._connected.wait()  # the listener restores the connection
            finally:
                self._sending = False
            if self._pending_values or self._pending_other:
                self._send_event.set()
            else:
                self._drained.set()

    @staticmethod
    def _read_replies(conn, items: list[_Outgoing]) -> None:
        for item in items:
            count = conn.read_response()
            if item.on_count is not None:
                item.on_count(int(count))

    def _write_batch(self, conn, batch: list[_Outgoing]) -> None:
        commands = []
        sent = []
        for item in batch:
            payload = item.payload() if callable(item.payload) else item.payload
            if payload is None:
                continue
            item.payload = payload  # keep the encoded form in case of a resend
            commands.append(("PUBLISH", item.name, payload))
            sent.append(item)
        if commands:
            conn.send_packed_command(conn.pack_commands(commands), check_health=False)
            self._read_replies(conn, sent)

    def query(self, name: str, timeout: float) -> tuple[bool, wire.WireValue | None]:
        """Ask every subscriber of ``name`` for its value; first non-None answer wins.

        Returns ``(complete, value)``: ``complete`` is False when ``timeout`` passed
        with answers missing (a silent or dead peer), in which case nobody knows
        whether a value exists and the caller must not fall back to its default.
        """
        self._check_open()
        pending = _PendingQuery(name)
        self._queries[pending.id] = pending
        try:
            deadline = time.monotonic() + timeout
            if self._resp3 and self._connected.is_set():
                self._publish_query_resp3(pending)
            else:
                self.wait_subscribed(name, timeout)  # so the PUBLISH count includes us
                self._publish_query(pending)
            self.before_wait()
            complete = pending.done.wait(max(0.0, deadline - time.monotonic()))
            return complete, pending.value
        finally:
            self._queries.pop(pending.id, None)

    def _publish_query_resp3(self, pending: _PendingQuery) -> None:
        """PUBLISH the query on the subscriber connection, behind the channel's SUBSCRIBE.

        Redis runs one connection's commands in order, so the subscription is active
        when the PUBLISH is counted; the listener hands the count to the query.
        """
        payload = wire.encode_query(pending.name, pending.id)
        if not self._connected.is_set():
            return  # never let a writer reconnect the listener's socket; re-run later
        try:
            with self._sub_write_lock:
                self._sub_replies.append(pending.on_published)
                self._sub_conn.send_command("PUBLISH", pending.name, payload,
                                            check_health=False)
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            pass  # the listener reconnects; _after_reconnect re-publishes the query

    def _publish_query(self, pending: _PendingQuery) -> None:
        """PUBLISH a query from the caller's greenlet (one hop less than via the sender).

        If the connection is down, the query is re-run after reconnection instead.
        """
        payload = wire.encode_query(pending.name, pending.id)
        try:
            with self._query_lock:
                conn = self._query_conn
                conn.send_command("PUBLISH", pending.name, payload, check_health=False)
                count = int(conn.read_response())
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            self._query_conn.disconnect()
            return  # _after_reconnect re-publishes unfinished queries
        pending.on_published(count)

    def _requeue(self, batch: list[_Outgoing]) -> None:
        """Put back what a broken connection may not have delivered (see _Outgoing)."""
        events = []
        for item in batch:
            if item.kind == "value":
                self._pending_values.setdefault(item.name, item)  # unless a newer one waits
            elif item.kind == "events":
                events.append(item)
        self._pending_other[:0] = events
        self._send_event.set()

    # -- listening -----------------------------------------------------------------------
    def _listen_forever(self, connected: bool = False) -> None:
        """Read the subscriber connection; reconnect when it breaks.

        ``connected``: this greenlet takes over from a listener that handed off (see
        :meth:`before_wait`), so the connection is already up.
        """
        me = gevent.getcurrent()
        for attempt in itertools.count():
            if self.closed or self._listener is not me:
                return
            try:
                if not connected:
                    self._connect_and_resubscribe()
                    if attempt:
                        self.reconnections += 1
                        log.warning("channel bus reconnected to %s", redacted(self.url))
                        self._after_reconnect()
                connected = False
                attempt = 0
                self._read_messages()
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                if self._listener is not me:
                    return
                self._connected.clear()
                for event in self._subscribed.values():
                    event.clear()
                self._sub_conn.disconnect()
                if self.closed:
                    return
                delay = _RECONNECT_DELAYS[min(attempt, len(_RECONNECT_DELAYS) - 1)]
                self._warn("connection", "", f"connection to {redacted(self.url)} lost "
                           f"({exc}); reconnecting")
                gevent.sleep(delay)  # back-off between reconnection attempts

    def _connect_and_resubscribe(self) -> None:
        self._sub_replies.clear()  # replies to a dead connection never come
        try:
            self._sub_conn.connect()
        except redis.ResponseError:
            if not self._resp3:
                raise
            # No HELLO 3 (Redis < 6): RESP2 subscriber, queries publish elsewhere.
            log.info("Redis at %s has no RESP3; using RESP2", redacted(self.url))
            self._resp3 = False
            self._sub_conn = self._new_sub_conn(protocol=2)
            self._sub_conn.connect()
        # Mark connected first: a channel added from now on subscribes itself, and one
        # added before is in the list below (a double SUBSCRIBE is harmless).
        self._connected.set()
        names = list(self.channels)
        with self._sub_write_lock:
            if names:
                self._sub_conn.send_command("SUBSCRIBE", *names, check_health=False)
        self._send_event.set()

    def _after_reconnect(self) -> None:
        """Re-announce held values, catch up on missed ones, re-run unfinished queries.

        Values published while this process was disconnected never reach it (pub/sub
        keeps nothing), so every channel also asks its peers again: a newer answer
        replaces what we hold. Peers that reconnect later do the same, so all holders
        converge on the newest value whichever reconnects first.
        """
        for channel in list(self.channels.values()):
            channel._announce()
            channel._catch_up()
        for pending in list(self._queries.values()):
            if not pending.done.is_set():
                pending.expected = None
                self.publish_other(pending.name, wire.encode_query(pending.name, pending.id),
                                   pending.on_published, kind="query")

    def _read_messages(self) -> None:
        conn = self._sub_conn
        me = gevent.getcurrent()
        while not self.closed and self._listener is me:
            try:
                response = conn.read_response(push_request=True)
            except redis.ResponseError as exc:  # an error reply to one of our commands
                if self._sub_replies:
                    self._sub_replies.popleft()
                self._warn("reply", "", f"Redis refused a command: {exc}")
                continue
            try:
                self._handle_response(response)
            except Exception:  # noqa: BLE001 - the listener must outlive any one message
                log.exception("channel bus: failed to handle %r", response[:2]
                              if isinstance(response, list) else response)

    def _handle_response(self, response: Any) -> None:
        if not isinstance(response, list):
            # A command reply (RESP3: a query's PUBLISH count); pushes are lists.
            if self._sub_replies:
                self._sub_replies.popleft()(int(response))
            return
        kind = response[0]
        if kind == b"message":
            self._on_message(response[1].decode("utf-8", "replace"), response[2])
        elif kind == b"subscribe":
            event = self._subscribed.get(response[1].decode("utf-8", "replace"))
            if event is not None:
                event.set()

    def _on_message(self, name: str, payload: bytes) -> None:
        try:
            msg = wire.decode(payload)
        except (wire.UnsafeMessageError, wire.MalformedMessageError) as exc:
            self._warn("drop", name, f"dropped a message on channel {name!r}: {exc}")
            return
        channel = self.channels.get(name)
        if isinstance(msg, wire.WireValue):
            if channel is not None:
                channel._on_wire_value(msg)
        elif isinstance(msg, wire.WireQuery):
            if msg.id in self._queries:
                return  # our own query: we know our answer (None)
            held = channel._held_for_reply() if channel is not None else None
            # Encode lazily in the sender: a reply is tiny, a held array may not be.
            self.publish_other(name, lambda n=name, i=msg.id, v=held: wire.encode_reply(n, i, v),
                               kind="reply")
        elif isinstance(msg, wire.WireReply):
            pending = self._queries.get(msg.id)
            if pending is not None:
                pending.on_reply(msg.value)

    # -- callbacks -----------------------------------------------------------------------
    # Callbacks run in the listener greenlet, in message order, as in BLISS: no extra
    # greenlet switch between a message and its callbacks (~10 % of a ping-pong). The
    # danger of that (a callback waiting for something only the listener can deliver,
    # such as another channel's value, would wait for itself) is removed by
    # before_wait(): every beacon-ipy wait first hands the socket to a new listener.
    def dispatch(self, func: Callable[..., Any], *args: Any) -> None:
        """Run ``func(*args)`` now, isolating failures (callbacks of a received message)."""
        try:
            func(*args)
        except Exception:  # noqa: BLE001 - isolation is the point
            log.exception("channel callback dispatch failed")

    def before_wait(self) -> None:
        """Call before blocking: if this is the listener, a new one takes over reading.

        The current greenlet finishes its callback and then retires. Messages keep
        flowing meanwhile, so the wait can be satisfied; callbacks of later messages
        may then run before the blocked callback returns.
        """
        if gevent.getcurrent() is self._listener and not self.closed:
            self._listener = gevent.spawn(self._listen_forever, True)
            self._listener.name = "beacon-channels-listen"
            self.listener_handoffs += 1

    # -- misc ----------------------------------------------------------------------------
    def _warn(self, kind: str, name: str, message: str) -> None:
        now = time.monotonic()
        key = (kind, name)
        if now - self._warned.get(key, -math.inf) >= _WARN_EVERY:
            self._warned[key] = now
            log.warning(message)

    def _check_open(self) -> None:
        if self.closed:
            raise RuntimeError(f"{self!r} is closed; create channels again to reconnect")

    def close(self, flush_timeout: float = 2.0) -> None:
        """Send what is pending, then stop every greenlet and close the sockets."""
        if self.closed:
            return
        if gevent.getcurrent() not in (self._sender, self._listener):
            self.flush(flush_timeout)
        self.closed = True
        for channel in list(self.channels.values()):
            channel._on_bus_closed()
        self.channels.clear()
        current = gevent.getcurrent()
        for g in (self._listener, self._sender):
            if g is not current:
                g.kill(block=False)
        self._sub_conn.disconnect()
        self._query_conn.disconnect()
        self._pub_conn.disconnect()
        if Bus._instances.get(self.url) is self:
            del Bus._instances[self.url]


def _identity(response: Any) -> Any:
    return response
