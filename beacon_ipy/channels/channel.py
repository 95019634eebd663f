"""``Channel`` and ``EventChannel``: values and events shared live between processes.

Same API and wire semantics as ``bliss.config.channels`` in BLISS 2.4, with these
differences, each on purpose:

- callbacks are held strongly (a lambda keeps firing) except bound methods, which are
  held weakly so that a channel never keeps its subscriber object alive;
- a callback that raises is logged and isolated: other callbacks and channels go on;
- messages are decoded by an allow-list unpickler: nothing from the bus is executed;
- the connection comes back by itself after Redis restarts (see :mod:`.bus`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

import gevent
import gevent.event

from beacon_ipy.channels import wire
from beacon_ipy.channels.bus import Bus
from beacon_ipy.channels.callbacks import CallbackSet
from beacon_ipy.channels.transport import Subscription
from beacon_ipy.connection.client import url_of_client

DEFAULT_TIMEOUT = 10.0
_NOT_GIVEN: Any = object()
_ATOMIC = wire.ATOMIC_TYPES


def _get_bus(redis: Any, bus: Bus | None) -> Bus:
    if bus is not None:
        return bus
    if redis is None or isinstance(redis, str):
        return Bus.get(redis)
    return Bus.get(url_of_client(redis))  # a redis-py client, as BLISS code passes it


class BaseChannel:
    """What Channel and EventChannel share: a name on a bus, and callbacks.

    The bus sees a channel only through the :class:`~.transport.Subscription` it gets
    at creation (four hooks), and the channel uses only the bus's
    :class:`~.transport.ChannelTransport` methods.
    """

    is_event_channel = False

    def __new__(cls, name: str, *args: Any, redis: Any = None, bus: Bus | None = None,
                **kwargs: Any):
        if not isinstance(name, str) or not name:
            raise TypeError(f"a channel name must be a non-empty str, not {name!r}")
        the_bus = _get_bus(redis, bus)
        existing = the_bus.channels.get(name)
        if existing is not None:
            if type(existing) is not cls:
                raise TypeError(
                    f"{name!r} is already a {type(existing).__name__} in this process; "
                    f"it cannot also be a {cls.__name__}"
                )
            return existing
        self = super().__new__(cls)
        self._preinit(the_bus, name)
        self._subscription = Subscription(
            name=name, owner=self, on_value=self._on_wire_value,
            held_value=self._held_for_reply, on_reconnect=self._resync,
            on_close=self._on_bus_closed)
        the_bus.attach(self._subscription)
        return self

    def _preinit(self, bus: Bus, name: str) -> None:
        self._bus = bus
        self._name = name
        self._callbacks = CallbackSet(name)
        self._closed = False

    @property
    def name(self) -> str:
        return self._name

    @property
    def bus(self) -> Bus:
        return self._bus

    @property
    def closed(self) -> bool:
        return self._closed

    def register_callback(self, callback: Callable[[Any], Any]) -> None:
        """Call ``callback(value)`` on every change (see the class docstring for which)."""
        self._callbacks.add(callback)

    def unregister_callback(self, callback: Callable[[Any], Any]) -> None:
        """Stop calling ``callback``; unknown callbacks are ignored."""
        self._callbacks.remove(callback)

    @property
    def callbacks(self) -> list[Callable]:
        """The live registered callbacks."""
        return self._callbacks.live()

    def _check_settable(self) -> None:
        if self._closed:
            raise RuntimeError(f"channel {self._name!r} is closed")
        if self._callbacks.is_firing():
            raise RuntimeError(
                f"channel {self._name!r}: cannot set its value from one of its own callbacks "
                f"(it would loop); set it from another greenlet, e.g. gevent.spawn(...)"
            )

    def close(self) -> None:
        """Unsubscribe and forget this channel in this process (its value too)."""
        if not self._closed:
            self._closed = True
            self._bus.detach(self._subscription)

    # Subscription hooks (called by the bus), overridden below.
    def _on_bus_closed(self) -> None:
        self._closed = True

    def _on_wire_value(self, value: wire.WireValue) -> None:
        raise NotImplementedError

    def _held_for_reply(self) -> wire.WireValue | None:
        return None

    def _resync(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Channel(BaseChannel):
    """A value shared live between processes, held in memory only.

    ``Channel(name)`` returns this process's one object for ``name``. Without
    ``value``, it asks the processes holding the channel for theirs; if none answers
    with a value, ``default_value`` is used and held: it is not broadcast, but later
    queries from other processes are answered with it, as in BLISS. Reading
    ``.value`` waits cooperatively (gevent) until the value is known, at most
    ``timeout`` seconds. Setting ``.value`` updates every process (rapid sets are
    coalesced: peers are guaranteed the latest). Callbacks fire on changes from any
    process, and on this process's own changes unless ``self_updates=False``.

    ``redis`` may be a URL or a redis-py client (BLISS style); by default the URL from
    ``BEACON_REDIS_URL`` or the per-user embedded server is used.
    """

    def __init__(self, name: str, value: Any = _NOT_GIVEN, default_value: Any = _NOT_GIVEN,
                 callback: Callable[[Any], Any] | None = None, timeout: float | None = None,
                 redis: Any = None, bus: Bus | None = None, self_updates: bool = True):
        self._self_updates = self_updates
        if timeout is not None:
            self._timeout = float(timeout)
        if default_value is not _NOT_GIVEN:
            self._default = default_value
        if value is not _NOT_GIVEN and value is not None:
            self.value = value
        elif self._held is None:
            self._start_query()
        if callback is not None:
            self.register_callback(callback)

    def _preinit(self, bus: Bus, name: str) -> None:
        super()._preinit(bus, name)
        self._id = str(os.getpid())
        self._timeout = DEFAULT_TIMEOUT
        self._default: Any = None
        self._self_updates = True
        self._held: wire.WireValue | None = None
        self._known = gevent.event.Event()
        self._query: gevent.Greenlet | None = None

    # -- configuration -------------------------------------------------------------------
    @property
    def default_value(self) -> Any:
        return self._default

    @property
    def timeout(self) -> float:
        return self._timeout

    @timeout.setter
    def timeout(self, value: float) -> None:
        self._timeout = float(value)

    # -- value ---------------------------------------------------------------------------
    @property
    def value(self) -> Any:
        """The current value, waiting (cooperatively, at most ``timeout`` s) if unknown."""
        return self.get()

    def get(self, timeout: float | None = None) -> Any:
        """The current value, waiting at most ``timeout`` s (default: the channel's own).

        Same as reading :attr:`value`, with a per-call limit that leaves the channel's
        ``timeout`` untouched (a reader that must not block long, e.g. a magic).
        """
        limit = self._timeout if timeout is None else float(timeout)
        held = self._held
        if held is None:
            if self._closed:
                raise RuntimeError(f"channel {self._name!r} is closed")
            if self._query is None or self._query.dead:
                self._start_query()
            self._bus.before_wait()  # a callback may be reading: keep messages flowing
            if not self._known.wait(limit):
                raise TimeoutError(
                    f"channel {self._name!r} got no value within {limit:g} s: the "
                    f"processes holding it did not answer (is the Redis server at "
                    f"{self._bus.url} reachable?)"
                )
            held = self._held
        return held.value

    @value.setter
    def value(self, new_value: Any) -> None:
        self._check_settable()
        held = wire.WireValue(self._id, self._newer_timestamp(), new_value)
        payload = wire.encode_value(held)  # refuses unsafe values before any change
        self._stop_query()
        self._held = held
        self._known.set()
        self._bus.publish_value(self._name, payload)
        if self._self_updates:
            self._fire(held)

    def _newer_timestamp(self) -> float:
        """Now, and newer than the value held: a set after a value received from a peer
        whose clock runs ahead must still win everywhere (processes keep the newest)."""
        ts = self._bus.next_timestamp()
        held = self._held
        if held is not None and ts <= held.timestamp:
            ts = math.nextafter(held.timestamp, math.inf)
        return ts

    @property
    def has_value(self) -> bool:
        """True if the value is known (set, received, or defaulted) without waiting."""
        return self._held is not None

    @property
    def timestamp(self) -> float | None:
        """When the current value was set (``time.time()`` of its writer), if known."""
        return None if self._held is None else self._held.timestamp

    @property
    def writer_id(self) -> str | None:
        """BLISS id (a pid string) of the process that set the current value."""
        return None if self._held is None else self._held.id

    @property
    def querying(self) -> bool:
        """True while a query for the current value is in flight (answers still due)."""
        return self._query is not None and not self._query.dead

    def requery(self) -> None:
        """Abandon an unanswered query, so that the next read asks again.

        For a reader that gave up waiting (interrupt, its own timeout): otherwise the
        next read would wait on the old query's remaining time.
        """
        if self._held is None:
            self._stop_query()

    # -- query ---------------------------------------------------------------------------
    def _start_query(self) -> None:
        if self._query is not None and not self._query.dead:
            return
        self._query = gevent.spawn(self._run_query)
        self._query.name = f"beacon-channel-query:{self._name}"

    def _stop_query(self) -> None:
        query = self._query
        self._query = None
        if query is not None and not query.dead and query is not gevent.getcurrent():
            query.kill(block=False)

    def _run_query(self) -> None:
        # Later answers count too: one from a holder that missed the newest value (it
        # was disconnected) may come first.
        complete, reply = self._bus.query(self._name, self._timeout, self._on_wire_value)
        if self._held is not None:
            return  # a value arrived (or was set) meanwhile
        if reply is None and not complete:
            return  # a peer did not answer: unknown; the reader's .value times out
        if reply is None:
            # BLISS semantics: hold the default (not published), answer later queries
            # with it. Timestamp 0 so that any real value supersedes it.
            held = self._held = wire.WireValue(self._id, 0.0, self._default)
            self._known.set()
            if self._self_updates:
                self._fire(held)
        else:
            self._on_wire_value(reply)

    # -- bus hooks -----------------------------------------------------------------------
    def _on_wire_value(self, value: wire.WireValue) -> None:
        held = self._held
        if held is not None and held.timestamp >= value.timestamp:
            return  # older or our own echo
        self._held = value
        self._known.set()
        if value.id == self._id and not self._self_updates:
            return
        self._fire(value)

    def _fire(self, held: wire.WireValue) -> None:
        """Run the callbacks with ``held``; if one waits and a newer value is fired
        meanwhile, the rest of this firing is dropped (no callback ends on ``held``)."""
        self._callbacks.fire(held.value, lambda: self._held is held)

    def _held_for_reply(self) -> wire.WireValue | None:
        # As BLISS 2.4: a process that fell back to its default holds it and answers
        # later queries with it (the seed: B's Channel("test") reads A's default 42).
        return self._held

    def _resync(self) -> None:
        """After a reconnection: re-announce what we hold, and ask peers for newer."""
        held = self._held
        if held is None:
            return  # a query is (or will be) running anyway
        if held.timestamp > 0:  # a held default (timestamp 0) is never broadcast
            self._bus.publish_value(self._name, wire.encode_value(held))

        def ask() -> None:
            complete, reply = self._bus.query(self._name, self._timeout, self._on_wire_value)
            if reply is not None:
                self._on_wire_value(reply)  # kept only if newer than what we hold

        gevent.spawn(ask).name = f"beacon-channel-catch-up:{self._name}"

    def __repr__(self) -> str:
        shown = "<waiting for value>" if self._held is None else repr(self._held.value)
        return f"Channel({self._name!r}) -> {shown}"


class EventChannel(BaseChannel):
    """Events posted by any process, delivered to every subscriber in order.

    ``post(event)`` queues an event; events posted before the next send go out as one
    message, and callbacks receive a ``list`` of events per message (the poster's own
    callbacks included). Ordered and lossless per poster while the connection lives.
    """

    is_event_channel = True

    def __init__(self, name: str, redis: Any = None, bus: Bus | None = None,
                 callback: Callable[[list], Any] | None = None):
        if callback is not None:
            self.register_callback(callback)

    def _preinit(self, bus: Bus, name: str) -> None:
        super()._preinit(bus, name)
        self._id = f"{os.getpid()}_{id(self)}"
        self._pending: list = []

    def post(self, event: Any) -> None:
        """Queue ``event`` for every subscriber; unsafe events are refused here."""
        if type(event) not in _ATOMIC:
            if self._closed:
                raise RuntimeError(f"event channel {self._name!r} is closed")
            wire.check_sendable(event)
        pending = self._pending
        pending.append(event)
        if len(pending) == 1:
            self._bus.publish_batch(self._name, self._take_batch)

    def post_many(self, events: list) -> None:
        """Queue several events at once (same as posting each, cheaper)."""
        for event in events:
            if type(event) not in _ATOMIC:
                wire.check_sendable(event)
        was_empty = not self._pending
        self._pending.extend(events)
        if was_empty and self._pending:
            self._bus.publish_batch(self._name, self._take_batch)

    def _take_batch(self) -> bytes | None:
        """Called by the sender: encode and clear every event pending so far."""
        events = self._pending
        if not events:
            return None
        self._pending = []
        return wire.encode_value(wire.WireValue(self._id, self._bus.next_timestamp(), events))

    def _on_wire_value(self, value: wire.WireValue) -> None:
        events = value.value
        if not isinstance(events, list):
            events = [events]
        self._callbacks.fire(events)

    def __repr__(self) -> str:
        return f"EventChannel({self._name!r})"
