"""A trailing-edge throttle driven by a gevent timer: few calls, and the last one always lands.

Why: a widget bound to a channel that changes at 1 kHz must not send 1000 comm messages
a second (each costs about 0.12 ms of kernel time and floods the browser), yet the
value finally shown must be the latest one. :class:`Throttle` calls its function at most
once per ``interval`` seconds: at once if the previous call is older than ``interval``
(no added latency for isolated changes), otherwise from a timer greenlet when the
interval has elapsed, with the arguments of the *latest* submission. Intermediate
submissions are dropped; the last one is never dropped.

The timer always runs on the main thread's hub (:mod:`beacon_ipy.jupyter.mainhub`): a
submission made from another thread (a widget observer run in a kernel subshell's
thread) is handed over to it, so a timer can never be left on a hub that does not run.

Pure gevent: no IPython, usable (and tested) in plain Python.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import gevent

from beacon_ipy.jupyter import mainhub

log = logging.getLogger("beacon_ipy.jupyter")

#: Default minimum spacing of widget updates (20 per second: smooth to the eye, and at
#: most ~2.4 ms of comm cost per second per widget).
DEFAULT_INTERVAL = 0.05


class Throttle:
    """Call ``func(*args)`` with the latest submitted ``args``, at most once per ``interval``.

    Submit by calling the throttle. Exceptions raised by ``func`` are logged (logger
    ``beacon_ipy.jupyter``) and do not stop later calls. ``calls`` counts the calls made.
    ``flush()`` makes a pending call now; ``close()`` drops it and stops the timer.
    """

    def __init__(self, func: Callable[..., Any], interval: float = DEFAULT_INTERVAL,
                 name: str = "throttle"):
        if interval < 0:
            raise ValueError(f"a throttle interval must be >= 0 seconds, not {interval!r}")
        self._func = func
        self.interval = float(interval)
        self.name = name
        self.calls = 0
        self._args: tuple | None = None
        self._last = -float("inf")  # monotonic time of the last call's start
        self._timer: gevent.Greenlet | None = None
        self._running = False
        self._closed = False

    @property
    def pending(self) -> bool:
        """True if a submission is waiting for its call."""
        return self._args is not None

    @property
    def closed(self) -> bool:
        return self._closed

    @mainhub.on_main_hub
    def __call__(self, *args: Any) -> None:
        """Submit ``args``: call now if allowed, else make sure a timer calls later."""
        if self._closed:
            return
        self._args = args
        if self._timer is not None:
            return  # the timer will pick up the latest args
        wait = self._last + self.interval - time.monotonic()
        if wait <= 0 and not self._running:
            self._call()
        else:
            self._timer = mainhub.spawn_later(max(wait, 0.0), self._on_timer,
                                              name=f"beacon-throttle:{self.name}")

    def _on_timer(self) -> None:
        self._timer = None
        if self._running:  # func is still running (it yielded): come back later
            self._timer = mainhub.spawn_later(self.interval, self._on_timer,
                                              name=f"beacon-throttle:{self.name}")
            return
        if self._args is not None and not self._closed:
            self._call()

    def _call(self) -> None:
        args, self._args = self._args, None
        if args is None:
            return
        self._last = time.monotonic()
        self._running = True
        self.calls += 1
        try:
            self._func(*args)
        except Exception:  # noqa: BLE001 - a failing update must not kill later ones
            log.exception("%s: update failed", self.name)
        finally:
            self._running = False

    @mainhub.on_main_hub
    def flush(self) -> None:
        """Make the pending call now (if any), ignoring the interval."""
        timer, self._timer = self._timer, None
        if timer is not None and timer is not gevent.getcurrent():
            timer.kill(block=False)
        if not self._closed and not self._running:
            self._call()

    def close(self) -> None:
        """Drop any pending call and stop the timer; later submissions are ignored."""
        self._closed = True
        self._args = None
        mainhub.run_soon(self._kill_timer)

    def _kill_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer is not gevent.getcurrent():
            timer.kill(block=False)

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("pending" if self.pending else "idle")
        return f"<Throttle {self.name} every {self.interval:g} s, {self.calls} calls, {state}>"
