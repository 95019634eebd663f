"""The interface between a channel (front end) and the bus that carries it (transport).

A channel gives the bus one :class:`Subscription`: its name, the front-end object and
four hooks. The bus never calls anything else on a channel, and a channel never calls
anything on the bus outside :class:`ChannelTransport`. Everything else (sockets,
coalescing, the query protocol, the listener and its hand-off, reconnection) is the
bus's business, split into one module per part:

- :mod:`.subscriber`: the subscriber socket; its one :meth:`connect` re-subscribes
  every channel (as redis-py's ``PubSub.on_connect`` does);
- :mod:`.listener`: the greenlet reading it, reconnecting with back-off, and handing
  the socket to a new greenlet when a callback is about to wait;
- :mod:`.sender`: the publisher socket and its coalescing queue;
- :mod:`.queries`: "who holds a value?" and the answers;
- :mod:`.dispatch`: decoding a message and routing it to a channel, a query, or a reply;
- :mod:`.bus`: one bus per Redis URL per process, composing the parts above.

The split follows redis-py (``Connection`` / ``PubSub`` with one ``on_connect``) and
ophyd-async's ``core/_signal.py`` (thin front ends over one backend interface).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from beacon_ipy.channels.wire import WireValue


@dataclass(eq=False)
class Subscription:
    """What a bus knows of one channel.

    - ``owner``: the front-end object (``Channel`` / ``EventChannel``), so that a
      process has one object per name;
    - ``on_value(value)``: a value arrived from the bus (runs in the listener greenlet);
    - ``held_value()``: the value to answer a peer's query with (None: "no value");
    - ``on_reconnect()``: the connection came back: re-announce, catch up;
    - ``on_close()``: the bus closed; the channel is dead.
    """

    name: str
    owner: Any
    on_value: Callable[[WireValue], None]
    held_value: Callable[[], WireValue | None]
    on_reconnect: Callable[[], None]
    on_close: Callable[[], None]


class ChannelTransport(Protocol):
    """What a channel may ask of its bus (:class:`beacon_ipy.channels.bus.Bus`)."""

    url: str
    closed: bool

    def attach(self, subscription: Subscription) -> None:
        """Register a channel and subscribe to its name (does not wait)."""

    def detach(self, subscription: Subscription) -> None:
        """Forget a channel and unsubscribe from its name."""

    def publish_value(self, name: str, payload: bytes) -> None:
        """Send ``name``'s latest value; a still-queued older one is replaced."""

    def publish_batch(self, name: str, take: Callable[[], bytes | None]) -> None:
        """Send what ``take()`` returns when the sender gets to it (never coalesced)."""

    def query(self, name: str, timeout: float,
              on_late: Callable[[WireValue], None] | None = None
              ) -> tuple[bool, WireValue | None]:
        """Ask every holder of ``name``; ``(complete, first value or None)``; the values
        of later answers go to ``on_late``."""

    def before_wait(self) -> None:
        """Call before blocking, so that a waiting callback never starves the listener."""

    def next_timestamp(self) -> float:
        """A timestamp strictly greater than any handed out before by this bus."""
