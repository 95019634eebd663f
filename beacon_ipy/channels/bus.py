"""The per-process, per-server channel bus: the transport behind every channel.

One :class:`Bus` per Redis URL per process. It implements
:class:`~beacon_ipy.channels.transport.ChannelTransport` (what channels may ask) over
these parts, one module each (see :mod:`.transport` for the map):

- :class:`~.subscriber.SubscriberConnection`: the subscriber socket (RESP3), whose one
  ``connect`` re-subscribes every channel;
- :class:`~.listener.Listener`: the greenlet reading it, reconnecting, handing off;
- :class:`~.sender.Sender`: the publisher socket and its coalescing queue;
- :class:`~.queries.Queries`: the query protocol;
- :class:`~.dispatch.Dispatcher`: decoding and routing each message.

On a reconnection, every channel re-announces what it holds and asks its peers again
(``Subscription.on_reconnect``), and unfinished queries are re-run; pending sends are
kept and retried (event batches are delivered at least once across a reconnection).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from types import MappingProxyType
from typing import Any, ClassVar

from beacon_ipy.channels import wire
from beacon_ipy.channels.dispatch import Dispatcher, RateLimitedWarnings
from beacon_ipy.channels.listener import Listener
from beacon_ipy.channels.queries import Queries
from beacon_ipy.channels.sender import Sender
from beacon_ipy.channels.subscriber import SubscriberConnection
from beacon_ipy.channels.transport import Subscription
from beacon_ipy.connection import check_reachable, configured_url, redacted, resolve_url


class Bus:
    """Channels of one process on one Redis server (see the module docstring)."""

    _instances: ClassVar[dict[str, Bus]] = {}

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
        self._subscriptions: dict[str, Subscription] = {}
        self._owners: dict[str, Any] = {}
        #: name -> channel object of this process (read-only view).
        self.channels = MappingProxyType(self._owners)
        self._last_ts = 0.0
        warn = RateLimitedWarnings()
        self._subscriber = SubscriberConnection(url, self._subscriptions.keys, warn)
        self._sender = Sender(url, self._subscriber.connected)
        self._queries = Queries(url, self._subscriber, self._sender, self.before_wait)
        self._listener = Listener(self._subscriber,
                                  Dispatcher(self._subscriptions, self._queries,
                                             self._sender, warn),
                                  on_connected=self._sender.wake,
                                  on_reconnect=self._after_reconnect, warn=warn)

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{len(self._owners)} channels"
        return f"<Bus {redacted(self.url)} ({state})>"

    # -- what channels ask (ChannelTransport) -----------------------------------------------
    def attach(self, subscription: Subscription) -> None:
        """Register a channel and subscribe to its name (does not wait)."""
        self._check_open()
        self._subscriptions[subscription.name] = subscription
        self._owners[subscription.name] = subscription.owner
        self._subscriber.subscribe(subscription.name)

    def detach(self, subscription: Subscription) -> None:
        """Forget a channel and unsubscribe from its name."""
        name = subscription.name
        if self._subscriptions.get(name) is subscription:
            del self._subscriptions[name]
            del self._owners[name]
            self._sender.drop(name)
            self._subscriber.unsubscribe(name)

    def publish_value(self, name: str, payload: bytes) -> None:
        """Send ``name``'s latest value; a still-queued older one is replaced."""
        self._sender.publish_value(name, payload)

    def publish_batch(self, name: str, take: Callable[[], bytes | None]) -> None:
        """Send what ``take()`` returns when the sender gets to it (event batches)."""
        self._sender.publish(name, take, kind="events")

    def query(self, name: str, timeout: float,
              on_late: Callable[[wire.WireValue], None] | None = None
              ) -> tuple[bool, wire.WireValue | None]:
        """Ask every subscriber of ``name`` for its value; first non-None answer wins.

        Returns ``(complete, value)``: ``complete`` is False when ``timeout`` passed
        with answers missing (a silent or dead peer), in which case nobody knows
        whether a value exists and the caller must not fall back to its default.
        ``on_late`` receives the values of the answers that come after the first one.
        """
        self._check_open()
        return self._queries.ask(name, timeout, on_late)

    def before_wait(self) -> None:
        """Call before blocking: if this is the listener, a new one takes over reading."""
        if not self.closed:
            self._listener.before_wait()

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

    # -- for users and tests ------------------------------------------------------------------
    def flush(self, timeout: float | None = 10.0) -> bool:
        """Wait until every queued message has been written; False on timeout."""
        if self._sender.is_current():
            return True
        self.before_wait()
        return self._sender.wait_drained(timeout)

    def wait_subscribed(self, name: str, timeout: float | None) -> bool:
        """True once the server confirmed this process's subscription to ``name``."""
        self.before_wait()
        return self._subscriber.wait_subscribed(name, timeout)

    @property
    def reconnections(self) -> int:
        """How many times the connection was lost and restored."""
        return self._listener.reconnections

    @property
    def listener_handoffs(self) -> int:
        """How many times a waiting callback handed the socket to a new listener."""
        return self._listener.handoffs

    # -- internals ----------------------------------------------------------------------------
    def _after_reconnect(self) -> None:
        """Re-announce held values, catch up on missed ones, re-run unfinished queries.

        Values published while this process was disconnected never reach it (pub/sub
        keeps nothing), so every channel also asks its peers again: a newer answer
        replaces what it holds. Peers that reconnect later do the same, so all holders
        converge on the newest value whichever reconnects first.
        """
        for subscription in list(self._subscriptions.values()):
            subscription.on_reconnect()
        self._queries.rerun_unfinished()

    def _check_open(self) -> None:
        if self.closed:
            raise RuntimeError(f"{self!r} is closed; create channels again to reconnect")

    def close(self, flush_timeout: float = 2.0) -> None:
        """Send what is pending, then stop every greenlet and close the sockets."""
        if self.closed:
            return
        if not (self._sender.is_current() or self._listener.is_current()):
            self.flush(flush_timeout)
        self.closed = True
        for subscription in list(self._subscriptions.values()):
            subscription.on_close()
        self._subscriptions.clear()
        self._owners.clear()
        self._listener.stop()
        self._sender.close()
        self._subscriber.disconnect()
        self._queries.close()
        if Bus._instances.get(self.url) is self:
            del Bus._instances[self.url]
