"""Which kind of kernel are we in, and keeping greenlets alive in a stock ipykernel.

Greenlets (channel listeners, the saver, live plots) only run when the thread's gevent
hub gets the CPU. Three situations, told apart by :func:`kernel_mode`:

``"beacon"``
    The ``beacon`` kernel (:mod:`beacon_ipy.jupyter.kernel`): the main thread sleeps in
    the gevent hub; greenlets run while idle and during ``time.sleep``, ``Event.wait``...
    Nothing to do.
``"stock+gevent"``
    A stock ``python3`` ipykernel where :func:`enable_integration` registered the
    ``gevent`` event-loop integration: between messages the kernel runs the hub (waking
    at once when a shell message arrives, and at least every ``kernel._poll_interval``).
    Greenlets run while idle and during ``gevent.sleep``; ``time.sleep`` in a cell still
    freezes them (the process is not monkey-patched).
``"stock"``
    A stock ipykernel without the integration: greenlets only run while a cell waits in
    gevent (``gevent.sleep``, a channel's ``.value``).
``"none"``
    No ipykernel at all (plain Python, terminal IPython): the caller drives the hub.

Importing this module is cheap and needs neither IPython nor ipykernel; the integration
imports ipykernel only when enabled.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

BEACON = "beacon"
STOCK_GEVENT = "stock+gevent"
STOCK = "stock"
NO_KERNEL = "none"

#: Name under which the integration is registered (``%gui gevent`` works too).
INTEGRATION_NAME = "gevent"

_beacon_kernel = False


def mark_beacon_kernel() -> None:
    """Record that this process was started by the beacon kernel launcher."""
    global _beacon_kernel
    _beacon_kernel = True


def current_kernel() -> Any | None:
    """The running ipykernel ``Kernel`` instance, or ``None`` outside an ipykernel."""
    if "ipykernel" not in sys.modules:
        return None
    try:
        from ipykernel.kernelapp import IPKernelApp
    except ImportError:  # pragma: no cover - ipykernel is a dependency
        return None
    if not IPKernelApp.initialized():
        return None
    return getattr(IPKernelApp.instance(), "kernel", None)


def _main_loop_runs_gevent(kernel: Any) -> bool:
    """True if the kernel's main asyncio loop waits in the gevent hub (beacon-style)."""
    io_loop = getattr(kernel, "io_loop", None)
    loop = getattr(io_loop, "asyncio_loop", None)
    selector = getattr(loop, "_selector", None)
    if selector is None:
        return False
    from gevent.selectors import GeventSelector

    return isinstance(selector, GeventSelector)


def kernel_mode(kernel: Any | None = None) -> str:
    """``"beacon"``, ``"stock+gevent"``, ``"stock"`` or ``"none"`` (see the module doc)."""
    if kernel is None:
        kernel = current_kernel()
    if kernel is None:
        return NO_KERNEL
    if _beacon_kernel or _main_loop_runs_gevent(kernel):
        return BEACON
    loop = getattr(kernel, "eventloop", None)
    if loop is not None and loop is _integration:
        return STOCK_GEVENT
    return STOCK


def greenlets_run_while_idle(kernel: Any | None = None) -> bool:
    """True if background greenlets progress while the kernel waits for the next cell."""
    return kernel_mode(kernel) in (BEACON, STOCK_GEVENT)


def limitations(mode: str | None = None) -> str:
    """One human-readable paragraph: what works in ``mode`` and how to get the rest.

    Meant to be shown once by the ``%load_ext beacon_ipy`` extension.
    """
    if mode is None:
        mode = kernel_mode()
    switch = (
        'For full support use the "Python 3 (beacon, gevent)" kernel: run '
        "`beacon-ipy install-kernel` once, then pick it in Kernel > Change Kernel."
    )
    if mode == BEACON:
        return "beacon kernel: greenlets run while the kernel is idle and while cells wait."
    if mode == STOCK_GEVENT:
        return (
            "Stock Python kernel with the gevent integration: background listeners run "
            "while the kernel is idle, but time.sleep() or any blocking call in a cell "
            "pauses them (use gevent.sleep()), and `%matplotlib widget`/`%gui` switch the "
            "integration off until it is enabled again. " + switch
        )
    if mode == STOCK:
        return (
            "Stock Python kernel: background listeners only run while a cell waits in "
            "gevent (gevent.sleep(), reading a channel's value). Call "
            "beacon_ipy.jupyter.eventloop.enable_integration() to keep them running while "
            "idle. " + switch
        )
    return "No Jupyter kernel: greenlets run whenever your code waits in gevent."


# --------------------------------------------------------------------------------------
# The stock-kernel integration


def _shell_stream(kernel: Any) -> Any:
    """The ZMQStream on which the main shell receives its messages."""
    from ipykernel import eventloops

    getter = getattr(eventloops, "get_shell_stream", None)
    if getter is not None:  # ipykernel >= 7 (messages reach the main thread via a pair)
        return getter(kernel)
    return kernel.shell_stream  # pragma: no cover - ipykernel 6


def _wake_fds(kernel: Any, stream: Any) -> list[int]:
    """File descriptors whose readiness must end a hub slice: the shell stream's and the
    asyncio loop's self-pipe (``call_soon_threadsafe`` from the kernel's other threads)."""
    import zmq

    fds = [stream.getsockopt(zmq.FD)]
    loop = getattr(getattr(kernel, "io_loop", None), "asyncio_loop", None)
    ssock = getattr(loop, "_ssock", None)
    if ssock is not None:
        try:
            fds.append(ssock.fileno())
        except OSError:  # pragma: no cover - loop closing
            pass
    return fds


def _run_hub_slice(kernel: Any) -> None:
    """The integration proper: give the hub the main thread until a shell message (or a
    cross-thread asyncio callback) arrives, or ``kernel._poll_interval`` elapses.

    ipykernel calls this from its main IOLoop about every millisecond while no message
    is being handled, so the hub owns the idle kernel almost all the time.
    """
    from gevent.select import select

    stream = _shell_stream(kernel)
    # zmq's FD is edge-triggered: handle what is already queued before sleeping on it.
    if stream.flush(limit=1):
        return
    timeout = max(float(getattr(kernel, "_poll_interval", 0.01)), 0.001)
    select(_wake_fds(kernel, stream), [], [], timeout)
    stream.flush(limit=1)


_integration = None  # the registered function, once enable_integration() ran
_wanted = False  # True between enable_integration() and disable_integration()
_lock = threading.Lock()


def _register() -> Any:
    """Register the ``gevent`` integration with ipykernel (once) and return it."""
    global _integration
    with _lock:
        if _integration is None:
            from ipykernel.eventloops import register_integration

            def loop_gevent(kernel: Any) -> None:
                """Run the gevent hub between kernel iterations (beacon-ipy)."""
                _run_hub_slice(kernel)

            register_integration(INTEGRATION_NAME)(loop_gevent)
            _integration = loop_gevent
        return _integration


def _on_eventloop_change(change: Any) -> None:
    """Re-enable the integration when something (``%matplotlib widget``) resets it to None."""
    kernel = change.owner
    if _wanted and change.new is None and _integration is not None:
        # Deferred: setting the trait inside its own observer would re-enter enter_eventloop.
        kernel.io_loop.add_callback(_reinstate, kernel)


def _reinstate(kernel: Any) -> None:
    if _wanted and kernel.eventloop is None:
        kernel.eventloop = _integration


def enable_integration(kernel: Any | None = None) -> str:
    """Keep greenlets running while a stock ipykernel is idle; return :func:`kernel_mode`.

    Idempotent. Does nothing in the beacon kernel (which needs nothing) or outside a
    kernel. Raises ``RuntimeError`` if another GUI event loop (Qt, Tk...) is active, since
    ipykernel runs only one integration at a time. Must be called from the main thread
    (e.g. from a cell or an extension's ``load_ipython_extension``).
    """
    global _wanted
    if kernel is None:
        kernel = current_kernel()
    mode = kernel_mode(kernel)
    if mode in (BEACON, NO_KERNEL):
        return mode
    integration = _register()
    current = kernel.eventloop
    if current is not None and current is not integration:
        raise RuntimeError(
            f"cannot keep greenlets running: the kernel already runs the event loop "
            f"{getattr(current, '__name__', current)!r} (from %gui or %matplotlib). Use the "
            f'"Python 3 (beacon, gevent)" kernel instead (`beacon-ipy install-kernel`).'
        )
    if not _wanted:
        kernel.observe(_on_eventloop_change, names="eventloop")
        _wanted = True
    if current is None:
        kernel.eventloop = integration
    return kernel_mode(kernel)


def disable_integration(kernel: Any | None = None) -> None:
    """Stop running the hub between iterations (undoes :func:`enable_integration`)."""
    global _wanted
    if kernel is None:
        kernel = current_kernel()
    if kernel is None:
        return
    if _wanted:
        _wanted = False
        try:
            kernel.unobserve(_on_eventloop_change, names="eventloop")
        except ValueError:  # pragma: no cover - observer already gone
            pass
    if _integration is not None and kernel.eventloop is _integration:
        kernel.eventloop = None
