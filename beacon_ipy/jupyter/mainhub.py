"""Everything the Jupyter layer starts runs on the main thread's gevent hub.

Why: gevent has one hub per OS thread, and ``gevent.spawn``, ``gevent.spawn_later``,
timers and ``Event.wait`` use the hub *of the calling thread*. ipykernel 7 handles some
messages in other threads: the shell-channel thread, and kernel *subshells* (JupyterLab
>= 4.4 sends widget comm messages to a subshell when the kernel has them). A widget
observer runs in the thread that handled the comm message, so a greenlet or timer it
started would land on that thread's hub, which never runs: a throttle stuck "pending"
for good, a slider that no longer follows other processes (issue 12).

The rule: code of this layer that can be reached from a comm message hands its work to
the main hub (:func:`run_soon`, or the :func:`on_main_hub` decorator on observers), and
every greenlet or timer it starts goes through :func:`spawn` / :func:`spawn_later`,
which always start it on the main hub. The main thread's hub is the one that runs while
the kernel is idle (the ``beacon`` kernel, or the stock-kernel integration of
:mod:`beacon_ipy.jupyter.eventloop`), and where the channels' listeners live.

Handing over from another thread uses ``hub.loop.run_callback_threadsafe``, which wakes
the main hub's loop; work handed over runs in order, each call in a new greenlet. Pure
gevent and threading: no IPython, usable in plain Python.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import gevent
import gevent.hub

F = TypeVar("F", bound=Callable[..., Any])

#: How long :func:`spawn` called from another thread waits for the main hub to start
#: the greenlet (the main thread may be busy in a cell that does not yield).
HANDOVER_TIMEOUT = 30.0

_main: dict[str, Any] = {}  # "hub": the main thread's hub, once captured


def on_main_thread() -> bool:
    """True in the process's main thread (real OS threads, even if monkey-patched)."""
    return gevent.hub.get_thread_ident() == gevent.hub.MAIN_THREAD_IDENT


def capture() -> gevent.hub.Hub | None:
    """Remember the main thread's hub (call it from the main thread: the extension does
    at load, and importing this module from the main thread does). Returns it, or None
    when called from another thread before any capture."""
    hub = _main.get("hub")
    if (hub is None or hub.dead) and on_main_thread():
        hub = _main["hub"] = gevent.get_hub()
    return hub


def main_hub() -> gevent.hub.Hub:
    """The main thread's hub; RuntimeError if it was never captured (the extension was
    loaded outside the main thread and nothing ran there since)."""
    hub = capture()
    if hub is None:
        raise RuntimeError("beacon_ipy: the main thread's gevent hub is unknown; run "
                           "%load_ext beacon_ipy in a normal cell (not in a subshell)")
    return hub


def run_soon(func: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """Run ``func(*args, **kwargs)`` on the main hub: now (in the caller's greenlet) if
    called from the main thread, else in a new greenlet of the main hub, soon."""
    if on_main_thread():
        func(*args, **kwargs)
        return
    main_hub().loop.run_callback_threadsafe(
        lambda: _named(gevent.spawn(func, *args, **kwargs), func))


def on_main_hub(method: F) -> F:
    """Decorator for observers and callbacks that another thread may call (widget
    observers run in the thread that handled the comm message): the call runs on the
    main hub, see :func:`run_soon`. The decorated function then returns None."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if on_main_thread():
            return method(*args, **kwargs)
        run_soon(method, *args, **kwargs)
        return None

    return wrapper  # type: ignore[return-value]


def call(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``func(*args, **kwargs)`` run on the main hub, returning its result (or raising its
    exception): at once from the main thread; from another thread (a cell run in a
    subshell) in a greenlet of the main hub, waiting for it (up to
    :data:`HANDOVER_TIMEOUT`)."""
    if on_main_thread():
        return func(*args, **kwargs)
    outcome: list[tuple[bool, Any]] = []
    done = threading.Event()

    def run() -> None:
        try:
            outcome.append((True, func(*args, **kwargs)))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread
            outcome.append((False, exc))
        finally:
            done.set()

    main_hub().loop.run_callback_threadsafe(lambda: _named(gevent.spawn(run), func))
    if not done.wait(HANDOVER_TIMEOUT):
        raise RuntimeError(f"beacon_ipy: the main thread did not run {func!r} within "
                           f"{HANDOVER_TIMEOUT:g} s (is a cell running that never waits?)")
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


def in_main_hub(func: F) -> F:
    """Decorator: the function always runs on the main hub (see :func:`call`); what it
    starts (bindings, timers, greenlets) lives there, whatever thread called it."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return call(func, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def spawn(func: Callable[..., Any], *args: Any, name: str | None = None) -> gevent.Greenlet:
    """``gevent.spawn(func, *args)`` on the main hub, whatever the calling thread."""
    return spawn_later(None, func, *args, name=name)


def spawn_later(seconds: float | None, func: Callable[..., Any], *args: Any,
                name: str | None = None) -> gevent.Greenlet:
    """``gevent.spawn_later(seconds, func, *args)`` on the main hub, whatever the calling
    thread (``None``: start at once). From another thread this waits (up to
    :data:`HANDOVER_TIMEOUT`) for the main hub to create the greenlet."""
    if on_main_thread():
        return _start(seconds, func, args, name)
    made: list[gevent.Greenlet] = []
    done = threading.Event()  # the original (thread) Event unless fully monkey-patched

    def create() -> None:
        made.append(_start(seconds, func, args, name))
        done.set()

    main_hub().loop.run_callback_threadsafe(create)
    if not done.wait(HANDOVER_TIMEOUT):
        raise RuntimeError(f"beacon_ipy: the main thread did not start {name or func!r} "
                           f"within {HANDOVER_TIMEOUT:g} s (is a cell running that never "
                           f"waits?)")
    return made[0]


def _start(seconds: float | None, func: Callable[..., Any], args: tuple,
           name: str | None) -> gevent.Greenlet:
    if seconds is None:
        greenlet = gevent.spawn(func, *args)
    else:
        # gevent timers count from the loop's cached clock, which is stale if the caller
        # has not yielded for a while: the timer would fire early.
        gevent.get_hub().loop.update_now()
        greenlet = gevent.spawn_later(max(float(seconds), 0.0), func, *args)
    return _named(greenlet, func, name)


def _named(greenlet: gevent.Greenlet, func: Any, name: str | None = None) -> gevent.Greenlet:
    greenlet.name = name or f"beacon:{getattr(func, '__qualname__', 'call')}"
    return greenlet


capture()
