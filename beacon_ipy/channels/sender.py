"""The publisher socket of a bus and its coalescing queue.

When the socket is idle (nothing queued, no reply outstanding), a message is written at
once from the caller's greenlet: the lowest latency. Otherwise it is queued for the
sender greenlet, which writes everything queued as one pipeline per round trip. That
queue is where rapid sets of a channel coalesce (only the latest value is sent) and
where events posted in a loop become one batch.

If the connection breaks, values and event batches whose delivery is uncertain are
queued again (events are delivered at least once across a reconnection); queries are
re-run by :mod:`.queries` and replies dropped (the queriers ask again). Only the sender
greenlet (re)connects the socket: a handshake reads replies, which must not interleave
with its own reads of PUBLISH counts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import gevent
import gevent.event

from beacon_ipy.channels.resp import CONNECTION_ERRORS, pack_publish
from beacon_ipy.connection import new_connection, redacted

log = logging.getLogger("beacon_ipy.channels")

Payload = bytes | Callable[[], bytes | None]


class Outgoing:
    """One message waiting for the sender, with an optional PUBLISH-count consumer.

    ``kind`` says what to do with it if the connection breaks before it is written:
    ``"value"`` and ``"events"`` are resent, ``"query"`` and ``"reply"`` dropped.
    """

    __slots__ = ("name", "payload", "on_count", "kind")

    def __init__(self, name: str, payload: Payload,
                 on_count: Callable[[int], None] | None = None, kind: str = "value"):
        self.name = name
        self.payload = payload
        self.on_count = on_count
        self.kind = kind

    def encoded(self) -> bytes | None:
        """The bytes to send (a callable payload is encoded once, and kept for a resend)."""
        payload = self.payload
        if callable(payload):
            payload = self.payload = payload()
        return payload


class Sender:
    """The publisher socket and its greenlet (see the module docstring)."""

    def __init__(self, url: str, connected: gevent.event.Event):
        self.url = url
        self._connected = connected  # the subscriber's: the server is reachable again
        self._conn = new_connection(url, socket_timeout=10, socket_connect_timeout=5)
        self._ready = False  # the sender greenlet connected the socket
        self._busy = False  # a write is in progress or its reply unread
        self._closed = False
        self._values: dict[str, Outgoing] = {}  # name -> latest value (coalesced)
        self._others: list[Outgoing] = []  # everything else, in order
        self._unread: list[Outgoing] = []  # written directly, count not read yet
        #: name -> the last value payload sent and not yet heard back; the dispatcher
        #: recognises (and skips decoding) the echo of our own value by it.
        self.own_values: dict[str, bytes] = {}
        self._wake = gevent.event.Event()
        self._drained = gevent.event.Event()
        self._drained.set()
        self._greenlet = gevent.spawn(self._run)
        self._greenlet.name = "beacon-channels-send"

    # -- queueing --------------------------------------------------------------------------
    def publish_value(self, name: str, payload: Payload) -> None:
        """Send ``name``'s latest value; an older still-queued value of it is replaced."""
        if type(payload) is bytes:
            self.own_values[name] = payload
        item = Outgoing(name, payload)
        if not self._write_now(item):
            self._values[name] = item
            self._drained.clear()
            self._wake.set()

    def publish(self, name: str, payload: Payload,
                on_count: Callable[[int], None] | None = None, kind: str = "events") -> None:
        """Send a message that must not be coalesced (event batch, query, reply)."""
        item = Outgoing(name, payload, on_count, kind)
        if not self._write_now(item):
            self._others.append(item)
            self._drained.clear()
            self._wake.set()

    def drop(self, name: str) -> None:
        """Forget ``name``'s queued value (its channel was closed)."""
        self._values.pop(name, None)
        self.own_values.pop(name, None)

    def wake(self) -> None:
        """Look at the queue now (the connection came back)."""
        self._wake.set()

    def is_current(self) -> bool:
        return gevent.getcurrent() is self._greenlet

    def wait_drained(self, timeout: float | None) -> bool:
        """Wait until everything queued was written; False on timeout."""
        return self._drained.wait(timeout)

    def _write_now(self, item: Outgoing) -> bool:
        """Write ``item`` at once if the socket is idle; False if it must queue."""
        if self._busy or not self._ready or self._values or self._others or self._closed:
            return False
        payload = item.encoded()
        if payload is None:
            return True
        self._busy = True
        self._drained.clear()
        # Queued for reply-reading before the write (which may yield), but the sender
        # greenlet is woken only after it: it must not read while we write.
        self._unread.append(item)
        try:
            self._conn.send_packed_command([pack_publish(item.name, payload)],
                                           check_health=False)
        except CONNECTION_ERRORS:
            # Only the sender greenlet reconnects; until then everything queues.
            self._ready = False
            if item in self._unread:
                self._unread.remove(item)
            self._busy = False
            self._wake.set()
            return False
        self._wake.set()
        return True

    # -- the greenlet ----------------------------------------------------------------------
    def _run(self) -> None:
        conn = self._conn
        while not self._closed:
            if not self._ready:
                try:
                    conn.connect()
                except CONNECTION_ERRORS:
                    gevent.sleep(0.05)  # the listener reports and retries the outage
                    continue
                self._ready = True
            self._wake.wait()
            self._wake.clear()
            unread, self._unread = self._unread, []
            batch = [*self._values.values(), *self._others]
            self._values.clear()
            self._others = []
            self._busy = True
            try:
                self._read_counts(unread)
                self._write(batch)
            except Exception as exc:  # noqa: BLE001 - the sender must survive anything
                if isinstance(exc, CONNECTION_ERRORS):
                    log.info("channel bus on %s: will resend after %s", redacted(self.url), exc)
                else:
                    log.exception("channel bus on %s: sending failed", redacted(self.url))
                # Whatever happened, the connection's state is unknown: start afresh.
                self._ready = False
                conn.disconnect()
                self._requeue(unread + batch)
                gevent.sleep(0.01)  # let the listener notice a broken connection
                self._connected.wait()  # the listener restores the connection
            finally:
                self._busy = False
            if self._values or self._others:
                self._wake.set()
            else:
                self._drained.set()

    def _read_counts(self, items: list[Outgoing]) -> None:
        for item in items:
            count = self._conn.read_response()
            if item.on_count is not None:
                item.on_count(int(count))

    def _write(self, batch: list[Outgoing]) -> None:
        commands = []
        sent = []
        for item in batch:
            payload = item.encoded()
            if payload is not None:
                commands.append(pack_publish(item.name, payload))
                sent.append(item)
        if commands:
            self._conn.send_packed_command([b"".join(commands)], check_health=False)
            self._read_counts(sent)

    def _requeue(self, batch: list[Outgoing]) -> None:
        """Put back what a broken connection may not have delivered (see Outgoing)."""
        events = []
        latest: dict[str, Outgoing] = {}
        for item in batch:  # oldest first: a value written directly, then the queue
            if item.kind == "value":
                latest[item.name] = item  # a later value of a name replaces an earlier
            elif item.kind == "events":
                events.append(item)
        for name, item in latest.items():
            self._values.setdefault(name, item)  # unless a newer one was queued since
        self._others[:0] = events
        self._wake.set()

    def close(self) -> None:
        self._closed = True
        if self._greenlet is not gevent.getcurrent():
            self._greenlet.kill(block=False)
        self._conn.disconnect()
