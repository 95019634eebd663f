"""A channel's callbacks: held the way users expect, run isolated, fanned out in order.

Better than BLISS on purpose (BLISS holds every callback by weak reference, so a lambda
never fires, and one raising callback kills the listener of every channel):

- plain functions and lambdas are held strongly and keep firing;
- bound methods are held weakly: a channel never keeps its subscriber object alive,
  and the callback goes away with the object;
- a callback that raises is logged (``beacon_ipy.channels``) and the others still run.

:class:`CallbackSet` also knows which greenlets are running its callbacks, so that a
channel can refuse to be set from one of its own callbacks (it would loop), as BLISS does.
"""

from __future__ import annotations

import logging
import types
import weakref
from collections.abc import Callable
from typing import Any

import greenlet

log = logging.getLogger("beacon_ipy.channels")


class CallbackRef:
    """A callback held strongly, or weakly if it is a bound method."""

    __slots__ = ("_strong", "_weak", "key")

    def __init__(self, callback: Callable):
        if not callable(callback):
            raise TypeError(f"{callback!r} is not callable")
        if hasattr(callback, "__self__") and hasattr(callback, "__func__"):
            self._strong = None
            self._weak = weakref.WeakMethod(callback)
            self.key: Any = (id(callback.__self__), id(callback.__func__))
        else:
            self._strong = callback
            self._weak = None
            owner = getattr(callback, "__self__", None)
            if owner is not None and not isinstance(owner, types.ModuleType):
                # A builtin bound method (``some_list.append``): a new object at each
                # attribute access, so identify it by its object and name.
                self.key = (id(owner), getattr(callback, "__name__", ""))
            else:
                self.key = id(callback)

    def get(self) -> Callable | None:
        return self._strong if self._weak is None else self._weak()


class CallbackSet:
    """The callbacks of one channel (see the module docstring)."""

    def __init__(self, owner: str):
        self._owner = owner  # for log messages
        self._refs: dict[Any, CallbackRef] = {}
        self._firing: set[greenlet.greenlet] = set()

    def __bool__(self) -> bool:
        return bool(self._refs)

    def add(self, callback: Callable) -> None:
        ref = CallbackRef(callback)
        self._refs[ref.key] = ref

    def remove(self, callback: Callable) -> None:
        self._refs.pop(CallbackRef(callback).key, None)

    def live(self) -> list[Callable]:
        """The registered callbacks still alive."""
        return [cb for cb in (ref.get() for ref in self._refs.values()) if cb is not None]

    def is_firing(self) -> bool:
        """True when called from one of these callbacks."""
        return greenlet.getcurrent() in self._firing

    def fire(self, value: Any, still_current: Callable[[], bool] | None = None) -> None:
        """Call each callback registered now with ``value``, isolating failures.

        ``still_current()`` is asked before each callback: once it is False (a callback
        waited and a newer value was fired to every callback meanwhile), the remaining
        callbacks are not given the older value, which would be their last call.
        """
        if not self._refs:
            return
        refs = list(self._refs.items())
        current = greenlet.getcurrent()
        self._firing.add(current)
        try:
            for key, ref in refs:
                if still_current is not None and not still_current():
                    return
                callback = ref.get()
                if callback is None:  # a bound method whose object is gone
                    self._refs.pop(key, None)
                    continue
                try:
                    callback(value)
                except Exception:  # noqa: BLE001 - one bad callback must not hurt others
                    log.exception("callback %r of channel %r raised", callback, self._owner)
        finally:
            self._firing.discard(current)
