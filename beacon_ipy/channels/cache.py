"""``Cache`` and ``clear_cache``: channels named after an object, reset together.

``Cache(obj, key)`` is ``Channel(f"{obj.name}:{key}")``, remembered per object so that
``clear_cache(obj)`` can set each of them back to its default value (in every process,
as BLISS does), and ``clear_cache()`` does so for every object with cached values.
"""

from __future__ import annotations

import weakref
from typing import Any

from beacon_ipy.channels.channel import Channel

# object -> {channel name: channel}; weak on objects so caches never keep them alive.
# Objects that cannot be weakly referenced are keyed by name in _BY_NAME instead.
_BY_OBJECT: weakref.WeakKeyDictionary[Any, dict[str, Channel]] = weakref.WeakKeyDictionary()
_BY_NAME: dict[str, dict[str, Channel]] = {}


def _registry_for(obj: Any) -> dict[str, Channel]:
    try:
        return _BY_OBJECT.setdefault(obj, {})
    except TypeError:  # not weak-referenceable (e.g. a namedtuple or __slots__ object)
        return _BY_NAME.setdefault(obj.name, {})


def Cache(obj: Any, key: str, **kwargs: Any) -> Channel:  # noqa: N802 - BLISS's name
    """A channel named ``"<obj.name>:<key>"``; ``kwargs`` go to :class:`Channel`.

    Raises TypeError if ``obj`` has no usable ``name``.
    """
    name = getattr(obj, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(
            f"Cache: cannot cache {key!r} for {obj!r}: the object has no 'name' attribute "
            f"(a non-empty str), which names its channels"
        )
    channel = Channel(f"{name}:{key}", **kwargs)
    _registry_for(obj)[channel.name] = channel
    return channel


def cached_channels(*objs: Any) -> list[Channel]:
    """The live cached channels of ``objs`` (of every object if none is given)."""
    if objs:
        registries = []
        for obj in objs:
            try:
                registries.append(_BY_OBJECT.get(obj, {}))
            except TypeError:
                registries.append(_BY_NAME.get(getattr(obj, "name", ""), {}))
    else:
        registries = [*_BY_OBJECT.values(), *_BY_NAME.values()]
    return [ch for reg in registries for ch in reg.values() if not ch.closed]


def clear_cache(*objs: Any) -> None:
    """Set every cached channel of ``objs`` (all objects if none) back to its default."""
    for channel in cached_channels(*objs):
        channel.value = channel.default_value
