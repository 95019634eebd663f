"""Which kind of kernel are we in, and keeping greenlets alive in a stock ipykernel.

Greenlets (channel listeners, the saver, live plots) only run when the thread's gevent
hub gets the CPU. The situations, told apart by :func:`kernel_mode`:

``"beacon"``
    The ``beacon`` kernel (:mod:`beacon_ipy.jupyter.kernel`): the main thread sleeps in
    the gevent hub; greenlets run while idle and during ``time.sleep``, ``Event.wait``...
    Nothing to do.
``"stock+gevent"``
    A stock ``python3`` ipykernel where :func:`enable_integration` registered the
    ``gevent`` event-loop integration: between messages the kernel runs the hub, waking
    as soon as the kernel's asyncio loop has something to do (a shell message, a timer...).
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


def _main_loop_runs_gevent(kernel: Any) -> bool | None:
    """Does the kernel's main asyncio loop wait in the gevent hub (as in the beacon kernel)?

    ``None`` when this cannot be told (no IOLoop yet, or an asyncio without ``_selector``).
    """
    io_loop = getattr(kernel, "io_loop", None)
    loop = getattr(io_loop, "asyncio_loop", None)
    selector = getattr(loop, "_selector", None)
    if selector is None:
        return None
    from gevent.selectors import GeventSelector

    return isinstance(selector, GeventSelector)


def kernel_mode(kernel: Any | None = None) -> str:
    """``"beacon"``, ``"stock+gevent"``, ``"stock"`` or ``"none"`` (see the module doc).

    Decided from the kernel's actual state (what its main loop waits in), so that a
    kernel set up like the beacon one by other means counts as ``"beacon"``; the
    launcher's own mark is only used when that state cannot be inspected.
    """
    if kernel is None:
        kernel = current_kernel()
    if kernel is None:
        return NO_KERNEL
    runs_gevent = _main_loop_runs_gevent(kernel)
    if runs_gevent or (runs_gevent is None and _beacon_kernel):
        return BEACON
    if _is_ours(getattr(kernel, "eventloop", None)):
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
            "pauses them (use gevent.sleep()), and no GUI event loop (%gui qt/tk) can run "
            "alongside. " + switch
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


#: Longest hub slice when asyncio has nothing scheduled (it is woken earlier by any of
#: its file descriptors, so this only bounds the cost of a missed wake-up).
MAX_SLICE = 1.0


def _asyncio_wait_plan(kernel: Any, stream: Any) -> tuple[list[int], list[int], float]:
    """What the kernel's main asyncio loop is waiting for: (read fds, write fds, timeout).

    The hub slice waits on exactly that, in gevent instead of in asyncio's selector, so
    that the kernel reacts as fast as a stock kernel (shell messages, cross-thread
    callbacks through the self-pipe, user asyncio tasks, timers) while sleeping in the hub
    most of the time. Falls back to the shell stream and ``kernel._poll_interval`` if the
    loop's internals are not what CPython's asyncio has (3.10-3.13).
    """
    import zmq

    poll = max(float(getattr(kernel, "_poll_interval", 0.01)), 0.001)
    loop = getattr(getattr(kernel, "io_loop", None), "asyncio_loop", None)
    selector = getattr(loop, "_selector", None)
    ready = getattr(loop, "_ready", None)
    scheduled = getattr(loop, "_scheduled", None)
    if selector is None or ready is None or scheduled is None:
        return [stream.getsockopt(zmq.FD)], [], poll
    if ready:
        return [], [], 0.0
    readers: list[int] = []
    writers: list[int] = []
    for key in list(selector.get_map().values()):
        if key.events & 1:  # selectors.EVENT_READ
            readers.append(key.fd)
        if key.events & 2:  # selectors.EVENT_WRITE
            writers.append(key.fd)
    timeout = MAX_SLICE
    if scheduled:
        timeout = min(timeout, max(scheduled[0].when() - loop.time(), 0.0))
    return readers, writers, timeout


def _run_hub_slice(kernel: Any) -> None:
    """The integration proper: give the main thread to the gevent hub until the kernel's
    asyncio loop has something to do (a shell message, a callback from another thread,
    a timer, any of its file descriptors ready).

    ipykernel calls this from its main IOLoop about every millisecond while no message
    is being handled, so the hub owns the idle kernel almost all the time.
    """
    from gevent.select import select

    stream = _shell_stream(kernel)
    # zmq's FD is edge-triggered: handle what is already queued before sleeping on it.
    if stream.flush(limit=1):
        return
    readers, writers, timeout = _asyncio_wait_plan(kernel, stream)
    if timeout > 0:
        try:
            select(readers, writers, [], timeout)
        except (OSError, ValueError):  # a descriptor closed under us: wait a poll period
            import gevent

            gevent.sleep(min(timeout, 0.01))
    stream.flush(limit=1)


# --------------------------------------------------------------------------------------
# Interrupts: to the cell, never to a background greenlet

# Whether a shell handler (a cell) runs on the main thread, and which one: an interrupt
# delivered late must not hit the next cell or the idle kernel.
_handler = {"active": False, "generation": 0}


def _root_greenlet(current: Any) -> Any:
    root = current
    while root.parent is not None:
        root = root.parent
    return root


def _deliver_interrupt(root: Any, generation: int) -> None:
    """Hub callback: raise KeyboardInterrupt in the cell, if that cell is still running."""
    if _handler["active"] and _handler["generation"] == generation and not root.dead:
        root.throw(KeyboardInterrupt)


def _greenlet_safe_sigint(signum: int, frame: Any) -> None:
    """SIGINT handler used while a cell runs.

    Python runs signal handlers in whatever code the main thread executes at that moment.
    When a cell waits in gevent, that is often the hub or a background greenlet: raising
    there would kill the greenlet (a channel listener...) or lose a wake-up inside the
    hub, leaving a greenlet asleep forever. So the KeyboardInterrupt is raised only in
    the main greenlet (the one running the cell); from anywhere else it is handed to the
    hub, which throws it into the cell's wait.
    """
    import greenlet

    current = greenlet.getcurrent()
    root = _root_greenlet(current)
    if current is root:
        raise KeyboardInterrupt
    from gevent import get_hub

    get_hub().loop.run_callback(_deliver_interrupt, root, _handler["generation"])


def install_interrupt_guard(kernel: Any) -> None:
    """Make the kernel deliver interrupts with :func:`_greenlet_safe_sigint` during cells.

    Replaces ipykernel's ``pre_handler_hook``/``post_handler_hook`` on this kernel
    instance (they install ``default_int_handler`` around each shell handler). Async
    cells keep ipykernel's own handler, which cancels the cell's task. Idempotent.
    """
    import signal

    if getattr(kernel, "_beacon_interrupt_guard", False):
        return

    def pre_handler_hook() -> None:
        _handler["generation"] += 1
        _handler["active"] = True
        kernel.saved_sigint_handler = signal.signal(signal.SIGINT, _greenlet_safe_sigint)

    def post_handler_hook() -> None:
        _handler["active"] = False
        signal.signal(signal.SIGINT, kernel.saved_sigint_handler)

    kernel.pre_handler_hook = pre_handler_hook
    kernel.post_handler_hook = post_handler_hook
    kernel._beacon_interrupt_guard = True


def remove_interrupt_guard(kernel: Any) -> None:
    """Give the kernel back ipykernel's own interrupt handling."""
    if not getattr(kernel, "_beacon_interrupt_guard", False):
        return
    for name in ("pre_handler_hook", "post_handler_hook", "_beacon_interrupt_guard"):
        kernel.__dict__.pop(name, None)


# --------------------------------------------------------------------------------------
# Enabling and disabling the integration

_wanted = False  # True between enable_integration() and disable_integration()
_lock = threading.Lock()


def _is_ours(loop: Any) -> bool:
    return bool(getattr(loop, "_beacon_gevent", False))


def _new_integration() -> Any:
    """A fresh integration function, registered as ``gevent`` (``%gui gevent``).

    Fresh each time it is installed: ipykernel keeps polling an event loop for as long as
    ``kernel.eventloop`` *is* the same object, so reinstating the very same function
    after a reset could leave two polling chains running.
    """
    from ipykernel.eventloops import register_integration

    def loop_gevent(kernel: Any) -> None:
        """Run the gevent hub between kernel iterations (beacon-ipy)."""
        _run_hub_slice(kernel)

    loop_gevent._beacon_gevent = True  # type: ignore[attr-defined]
    with _lock:
        register_integration(INTEGRATION_NAME)(loop_gevent)
    return loop_gevent


def _on_eventloop_change(change: Any) -> None:
    """Re-enable the integration when something (``%matplotlib widget``) resets it to None."""
    kernel = change.owner
    if _wanted and change.new is None:
        # Deferred: setting the trait inside its own observer would re-enter enter_eventloop.
        kernel.io_loop.add_callback(_reinstate, kernel)


def _reinstate(kernel: Any) -> None:
    if _wanted and kernel.eventloop is None:
        kernel.eventloop = _new_integration()


def enable_integration(kernel: Any | None = None) -> str:
    """Keep greenlets running while a stock ipykernel is idle; return :func:`kernel_mode`.

    Idempotent. Does nothing in the beacon kernel (which needs nothing) or outside a
    kernel. Also makes interrupts land in the cell rather than in a background greenlet
    (:func:`install_interrupt_guard`). Raises ``RuntimeError`` if another GUI event loop
    (Qt, Tk...) is active, since ipykernel runs only one integration at a time. Must be
    called from the main thread (e.g. from a cell or an extension's
    ``load_ipython_extension``).
    """
    global _wanted
    if kernel is None:
        kernel = current_kernel()
    mode = kernel_mode(kernel)
    if mode in (BEACON, NO_KERNEL):
        return mode
    current = kernel.eventloop
    if current is not None and not _is_ours(current):
        raise RuntimeError(
            f"cannot keep greenlets running: the kernel already runs the event loop "
            f"{getattr(current, '__name__', current)!r} (from %gui or %matplotlib). Use the "
            f'"Python 3 (beacon, gevent)" kernel instead (`beacon-ipy install-kernel`).'
        )
    if not _wanted:
        kernel.observe(_on_eventloop_change, names="eventloop")
        _wanted = True
    install_interrupt_guard(kernel)
    if current is None:
        kernel.eventloop = _new_integration()
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
    if _is_ours(kernel.eventloop):
        kernel.eventloop = None
    if kernel_mode(kernel) != BEACON:
        remove_interrupt_guard(kernel)
