"""What the Jupyter layer started, so that ``%unload_ext beacon_ipy`` can stop all of it.

Widget bindings, event logs, status panels, background greenlets, the saver, and the
channels and buses that the magics opened (as opposed to ones user code opened first)
are recorded in :data:`REGISTRY`. :meth:`Registry.close_all` stops them in a safe
order: widgets first (no more updates), then greenlets, then channels, then buses left
without channels.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import gevent

from beacon_ipy.channels import BaseChannel, Bus
from beacon_ipy.connection import resolve_url
from beacon_ipy.jupyter import mainhub

log = logging.getLogger("beacon_ipy.jupyter")


class Closable(Protocol):
    def close(self) -> None: ...


class Registry:
    """A set of live things to stop together (see the module docstring)."""

    def __init__(self) -> None:
        self.closables: list[Closable] = []
        self.greenlets: set[gevent.Greenlet] = set()
        self.channels: list[BaseChannel] = []
        self.buses: list[Bus] = []

    # -- recording ---------------------------------------------------------------------
    def add(self, obj: Closable) -> Any:
        """Record ``obj`` (anything with ``close()``); returns it."""
        if obj not in self.closables:
            self.closables.append(obj)
        return obj

    def discard(self, obj: Closable) -> None:
        """Forget ``obj`` (it closed itself)."""
        try:
            self.closables.remove(obj)
        except ValueError:
            pass

    def spawn(self, func: Any, *args: Any, name: str | None = None) -> gevent.Greenlet:
        """``gevent.spawn`` on the main hub (whatever the calling thread) whose greenlet is
        killed by :meth:`close_all`."""
        g = mainhub.spawn(func, *args, name=name)
        self.greenlets.add(g)
        g.link(self.greenlets.discard)
        return g

    def open_channel(self, cls: type[BaseChannel], name: str, **kwargs: Any) -> BaseChannel:
        """``cls(name, **kwargs)``, remembering the channel (and its bus) if it is new here.

        Channels that user code opened before are not ours to close.
        """
        url = resolve_url(None)
        bus = Bus.existing(url)
        bus_existed = bus is not None and not bus.closed
        existed = bus_existed and name in bus.channels
        channel = cls(name, **kwargs)
        if not bus_existed and channel.bus not in self.buses:
            self.buses.append(channel.bus)
        if not existed and channel not in self.channels:
            self.channels.append(channel)
        return channel

    # -- stopping ----------------------------------------------------------------------
    @mainhub.in_main_hub
    def close_all(self) -> None:
        """Stop everything recorded (idempotent)."""
        for obj in reversed(self.closables[:]):
            try:
                obj.close()
            except Exception:  # noqa: BLE001 - stop the rest anyway
                log.exception("closing %r failed", obj)
        self.closables.clear()
        current = gevent.getcurrent()
        greenlets = [g for g in self.greenlets if g is not current]
        gevent.killall(greenlets, block=True, timeout=2.0)
        self.greenlets.clear()
        for channel in self.channels:
            if not channel.closed:
                channel.close()
        self.channels.clear()
        for bus in self.buses:
            if not bus.closed and not bus.channels:
                bus.close()
        self.buses.clear()

    def __repr__(self) -> str:
        return (f"<Registry {len(self.closables)} widgets/services, {len(self.greenlets)} "
                f"greenlets, {len(self.channels)} channels, {len(self.buses)} buses>")


#: The registry of the Jupyter layer in this process.
REGISTRY = Registry()
