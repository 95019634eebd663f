"""Routing one received message: decode it safely, then hand it to whom it concerns.

- a value goes to its channel's ``on_value`` hook (which runs the callbacks, each
  isolated by the channel itself);
- a peer's query is answered with the channel's ``held_value()`` (None: "no value"):
  **every subscriber answers every query**, or real BLISS readers wait 10 s;
- a reply goes to the query it answers.

A message that does not decode, or names a global outside the allow-list
(:mod:`.wire`), is dropped with a rate-limited warning: nothing from the bus runs.
"""

from __future__ import annotations

import logging
import math
import time

from beacon_ipy.channels import wire
from beacon_ipy.channels.queries import Queries
from beacon_ipy.channels.sender import Sender
from beacon_ipy.channels.transport import Subscription

log = logging.getLogger("beacon_ipy.channels")

WARN_EVERY = 10.0  # seconds between repeated warnings of the same kind and channel


class RateLimitedWarnings:
    """``warn(kind, name, message)`` logs at most once per ``WARN_EVERY`` per kind+name."""

    def __init__(self) -> None:
        self._last: dict[tuple[str, str], float] = {}

    def __call__(self, kind: str, name: str, message: str) -> None:
        now = time.monotonic()
        key = (kind, name)
        if now - self._last.get(key, -math.inf) >= WARN_EVERY:
            self._last[key] = now
            log.warning(message)


class Dispatcher:
    """``dispatcher(channel_name, payload)``: route one message (see the module docstring)."""

    def __init__(self, subscriptions: dict[str, Subscription], queries: Queries,
                 sender: Sender, warn: RateLimitedWarnings):
        self._subscriptions = subscriptions
        self._queries = queries
        self._sender = sender
        self._warn = warn
        self._own_values = sender.own_values

    def __call__(self, name: str, payload: bytes) -> None:
        own = self._own_values.get(name)
        if own is not None and own == payload:
            # The echo of our own latest value (every holder is subscribed to what it
            # publishes): we hold it already, decoding it would change nothing.
            del self._own_values[name]
            return
        try:
            msg = wire.decode(payload)
        except (wire.UnsafeMessageError, wire.MalformedMessageError) as exc:
            self._warn("drop", name, f"dropped a message on channel {name!r}: {exc}")
            return
        if type(msg) is wire.WireValue:
            subscription = self._subscriptions.get(name)
            if subscription is not None:
                subscription.on_value(msg)
        elif type(msg) is wire.WireQuery:
            if self._queries.is_own(msg.id):
                return  # our own query: we know our answer (no value)
            subscription = self._subscriptions.get(name)
            held = subscription.held_value() if subscription is not None else None
            # Encoded by the sender when it gets there: a reply is tiny, a held array
            # may not be.
            self._sender.publish(name, lambda: wire.encode_reply(name, msg.id, held),
                                 kind="reply")
        else:
            self._queries.on_reply(msg)
