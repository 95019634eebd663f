"""The listener greenlet of a bus: reads the subscriber socket, reconnects, hands off.

It reads :class:`~beacon_ipy.channels.subscriber.SubscriberConnection` and passes every
message to ``on_message(channel, payload)`` in arrival order; callbacks run inside that
call, in this greenlet, as in BLISS (no extra greenlet switch per message, ~10 % of a
ping-pong). One message that fails to be handled is logged; the listener goes on.

**Hand-off**: a callback that waits on beacon-ipy (reads a channel whose value needs a
query, flushes) would wait for an answer only this greenlet can read. So every
beacon-ipy wait first calls :meth:`Listener.before_wait`: if it runs in the listener, a
new listener greenlet takes over the (connected) socket, and the current one retires
once its callback returns. In BLISS the same callback deadlocks until its 10 s timeout.

**Reconnection**: when the socket breaks, it reconnects with back-off (10 ms ... 1 s);
the subscriber's ``connect`` re-subscribes every channel, then ``on_connected`` and, on
a reconnection, ``on_reconnect`` run (the bus re-announces values and re-runs queries).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import gevent

from beacon_ipy.channels.resp import CONNECTION_ERRORS
from beacon_ipy.channels.subscriber import SubscriberConnection
from beacon_ipy.connection import redacted

log = logging.getLogger("beacon_ipy.channels")

RECONNECT_DELAYS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0)


class Listener:
    """The one greenlet reading a bus's subscriber socket (see the module docstring)."""

    def __init__(self, subscriber: SubscriberConnection,
                 on_message: Callable[[str, bytes], None],
                 on_connected: Callable[[], None], on_reconnect: Callable[[], None],
                 warn: Callable[[str, str, str], None]):
        self._sub = subscriber
        self._on_message = on_message
        self._on_connected = on_connected
        self._on_reconnect = on_reconnect
        self._warn = warn
        self._stopped = False
        self._ever_connected = False
        self.reconnections = 0
        self.handoffs = 0
        self._greenlet = self._spawn(connected=False)

    def _spawn(self, connected: bool) -> gevent.Greenlet:
        greenlet = gevent.spawn(self._run, connected)
        greenlet.name = "beacon-channels-listen"
        return greenlet

    def is_current(self) -> bool:
        """True when called from the listener greenlet (i.e. from a callback)."""
        return gevent.getcurrent() is self._greenlet

    def before_wait(self) -> None:
        """If called from the listener, a new listener takes over reading now.

        The current greenlet finishes its callback, then retires. Messages keep flowing
        meanwhile, so the wait can be satisfied; callbacks of later messages may then
        run before the blocked callback returns.
        """
        if gevent.getcurrent() is self._greenlet and not self._stopped:
            self._greenlet = self._spawn(connected=True)
            self.handoffs += 1

    def stop(self) -> None:
        self._stopped = True
        if self._greenlet is not gevent.getcurrent():
            self._greenlet.kill(block=False)

    def _run(self, connected: bool) -> None:
        """Read until stopped or replaced; reconnect when the socket breaks.

        ``connected``: this greenlet takes over from one that handed off, so the
        socket is already up.
        """
        me = gevent.getcurrent()
        failures = 0
        while not self._stopped and self._greenlet is me:
            try:
                if not connected:
                    self._sub.connect()
                    self._on_connected()
                    if self._ever_connected:
                        self.reconnections += 1
                        log.warning("channel bus reconnected to %s", redacted(self._sub.url))
                        self._on_reconnect()
                    self._ever_connected = True
                connected = False
                failures = 0
                self._read(me)
            except CONNECTION_ERRORS as exc:
                if self._greenlet is not me:
                    return
                self._sub.disconnect()
                if self._stopped:
                    return
                delay = RECONNECT_DELAYS[min(failures, len(RECONNECT_DELAYS) - 1)]
                failures += 1
                self._warn("connection", "", f"connection to {redacted(self._sub.url)} "
                           f"lost ({exc}); reconnecting")
                gevent.sleep(delay)  # back-off between reconnection attempts

    def _read(self, me: gevent.Greenlet) -> None:
        read = self._sub.read
        handle = self._on_message
        while not self._stopped and self._greenlet is me:
            message = read()
            if message is None:
                continue
            try:
                handle(*message)
            except Exception:  # noqa: BLE001 - the listener must outlive any one message
                log.exception("channel bus: failed to handle a message on %r", message[0])
