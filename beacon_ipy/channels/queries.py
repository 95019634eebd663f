"""The query protocol: "who holds a value for this channel?" (BLISS 2.4).

A querier publishes ``_Query(name, id)``; PUBLISH returns the number of subscribers,
the querier included, and every subscriber answers with ``_Reply(name, id, value)``
(``value`` None when it holds nothing). The first answer carrying a value wins; if all
answers are None, nobody holds a value and the channel falls back to its default. If
answers are missing when the time is up (a peer died after being counted), nobody knows
whether a value exists: the query is *incomplete* and the default must not be taken.

The query goes out on the subscriber socket behind the channel's SUBSCRIBE when it can
(RESP3, one round trip; see :mod:`.subscriber`), otherwise from the caller's greenlet on
a connection of its own once the subscription is confirmed.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable

import gevent.event
import gevent.lock

from beacon_ipy.channels import wire
from beacon_ipy.channels.resp import CONNECTION_ERRORS, pack_publish
from beacon_ipy.channels.sender import Sender
from beacon_ipy.channels.subscriber import SubscriberConnection
from beacon_ipy.connection import new_connection


class PendingQuery:
    """A query in flight: how many answers to expect, and the first value received.

    The asker goes on at the first answer carrying a value (BLISS's rule), or once every
    counted subscriber answered. With ``on_late``, answers that come after the first
    value still count, and each value among them is passed to ``on_late``: a holder
    that missed a value (it was disconnected) may answer first with a stale one, and
    the up-to-date holder's answer must not be thrown away.
    """

    def __init__(self, name: str, on_late: Callable[[wire.WireValue], None] | None = None):
        self.name = name
        self.id = uuid.uuid4().hex
        self.expected: int | None = None  # answers due, None until published
        self.answers = 0
        self.value: wire.WireValue | None = None
        self.done = gevent.event.Event()
        self.on_late = on_late
        self.deadline = math.inf  # when the asker stops listening for late answers

    @property
    def complete(self) -> bool:
        """Every counted subscriber answered."""
        return self.expected is not None and self.answers >= self.expected

    def on_published(self, subscribers: int) -> None:
        # Every subscriber answers, ourselves included; we need not hear our own answer
        # (we query because we hold nothing), so expect one fewer.
        self.expected = (self.expected or 0) + subscribers - 1
        if self.complete:
            self.done.set()

    def on_reply(self, value: wire.WireValue | None) -> None:
        # Answers are counted even before the PUBLISH count is known (it may be read
        # after them, on another connection).
        self.answers += 1
        if value is not None:
            if self.value is None and not self.done.is_set():
                self.value = value
                self.done.set()
            elif self.on_late is not None:
                self.on_late(value)  # the channel keeps it only if newer
        if self.complete:
            self.done.set()


class Queries:
    """The queries of one bus in flight, and how to send them."""

    def __init__(self, url: str, subscriber: SubscriberConnection, sender: Sender,
                 before_wait: Callable[[], None]):
        self._sub = subscriber
        self._sender = sender
        self._before_wait = before_wait
        self._conn = new_connection(url, socket_timeout=10, socket_connect_timeout=5)
        self._lock = gevent.lock.Semaphore()
        self._pending: dict[str, PendingQuery] = {}

    def ask(self, name: str, timeout: float,
            on_late: Callable[[wire.WireValue], None] | None = None
            ) -> tuple[bool, wire.WireValue | None]:
        """Ask every subscriber of ``name``; ``(complete, first value or None)``.

        With ``on_late``, the values of answers arriving after the first value (until
        every subscriber answered, at most ``timeout``) are passed to it.
        """
        self._forget_expired()
        pending = PendingQuery(name, on_late)
        self._pending[pending.id] = pending
        deadline = time.monotonic() + timeout
        try:
            payload = wire.encode_query(name, pending.id)
            if not self._sub.publish(name, payload, pending.on_published):
                self._before_wait()
                self._sub.wait_subscribed(name, timeout)  # so the count includes us
                self._publish_direct(pending, payload)
            self._before_wait()
            complete = pending.done.wait(max(0.0, deadline - time.monotonic()))
            return complete, pending.value
        finally:
            if on_late is None or pending.complete:
                self._pending.pop(pending.id, None)
            else:  # keep listening for late answers until all came or time is up
                pending.deadline = deadline

    def _forget_expired(self) -> None:
        now = time.monotonic()
        for query_id, pending in list(self._pending.items()):
            if pending.deadline < now:
                del self._pending[query_id]

    def _publish_direct(self, pending: PendingQuery, payload: bytes) -> None:
        """PUBLISH from the caller's greenlet (one hop less than via the sender)."""
        try:
            with self._lock:
                self._conn.send_packed_command([pack_publish(pending.name, payload)],
                                               check_health=False)
                count = int(self._conn.read_response())
        except CONNECTION_ERRORS:
            self._conn.disconnect()
            return  # rerun_unfinished() publishes it again after the reconnection
        pending.on_published(count)

    def is_own(self, query_id: str) -> bool:
        """True for a query this bus sent (it knows its own answer: no value)."""
        return query_id in self._pending

    def on_reply(self, reply: wire.WireReply) -> None:
        pending = self._pending.get(reply.id)
        if pending is not None:
            pending.on_reply(reply.value)
            if pending.complete and pending.deadline < math.inf:
                del self._pending[reply.id]  # the asker left; every answer is in

    def rerun_unfinished(self) -> None:
        """After a reconnection: publish again every query still waiting for answers."""
        for pending in list(self._pending.values()):
            if not pending.done.is_set():
                pending.expected = None
                pending.answers = 0
                self._sender.publish(pending.name, wire.encode_query(pending.name, pending.id),
                                     pending.on_published, kind="query")

    def close(self) -> None:
        self._conn.disconnect()
