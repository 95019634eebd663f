"""Beacon channels: values and events shared live between processes over Redis pub/sub.

Wire-compatible with ``bliss.config.channels`` (BLISS 2.4), decoded safely::

    from beacon_ipy.channels import Channel, EventChannel, Cache, clear_cache

    c = Channel("test", default_value=42)
    c.register_callback(print)
    c.value = "something new"      # every process holding "test" sees it

See :mod:`beacon_ipy.channels.channel` for the semantics and :mod:`.wire` for the
format and the allow-list.
"""

from beacon_ipy.channels.bus import Bus
from beacon_ipy.channels.cache import Cache, cached_channels, clear_cache
from beacon_ipy.channels.channel import DEFAULT_TIMEOUT, BaseChannel, Channel, EventChannel
from beacon_ipy.channels.wire import (
    MalformedMessageError,
    UnsafeMessageError,
    UnsafeValueError,
    allow_global,
)


def close_all() -> None:
    """Close every channel bus of this process (pending sends are flushed first)."""
    Bus.close_all()


def open_channels() -> list[BaseChannel]:
    """Every open channel of this process, on every bus (what ``%channel`` lists)."""
    return [c for bus in Bus.instances() for c in list(bus.channels.values())]


__all__ = [
    "DEFAULT_TIMEOUT",
    "BaseChannel",
    "Bus",
    "Cache",
    "Channel",
    "EventChannel",
    "MalformedMessageError",
    "UnsafeMessageError",
    "UnsafeValueError",
    "allow_global",
    "cached_channels",
    "clear_cache",
    "close_all",
    "open_channels",
]
