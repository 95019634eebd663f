"""Launcher of the ``beacon`` Jupyter kernel: an ipykernel whose main thread lives in gevent.

Why: channel listeners, the saver and live plots are greenlets. In a stock kernel the
main thread sleeps in a native ``epoll`` between cells, so no greenlet runs while the
kernel is idle. This launcher arranges for the main thread to sleep inside the gevent
hub instead, so greenlets run while the kernel is idle and while a cell waits
(``time.sleep``, ``gevent.sleep``, ``Event.wait``, a channel's ``.value``).

How (see docs/kernel.md for what was measured and why each step is needed):

1. ``gevent.monkey.patch_all(thread=False)`` before anything else is imported. Threads
   stay real OS threads: ipykernel runs heartbeat, control, the shell channel and IOPub
   in threads, and ``zmq.device`` in a green thread would block the kernel forever.
2. An asyncio event-loop policy whose *new* loops use the original native selector.
   ipykernel builds the worker threads' IOLoops in the main thread; with the patched
   ``selectors`` module they would get a gevent selector bound to the wrong hub and die
   with ``LoopExit``.
3. The main thread's own loop is a ``SelectorEventLoop`` over
   :class:`gevent.selectors.GeventSelector`: when tornado/asyncio wait for the next
   message, they wait in the gevent hub, which runs every ready greenlet meanwhile.
4. Start :class:`ipykernel.kernelapp.IPKernelApp` as usual, except that
5. during a cell, SIGINT (Jupyter's "interrupt") raises ``KeyboardInterrupt`` in the
   cell only: Python runs signal handlers in whatever greenlet is executing, and a
   background greenlet (or the hub) hit by it would die or lose a wake-up
   (:func:`beacon_ipy.jupyter.eventloop.install_interrupt_guard`).
6. ``SIGUSR1`` prints every thread's stack to the kernel's stderr (the Jupyter server's
   log): a main thread blocked for good (cells stay queued, ``[*]``) shows where it
   waits, even though no Python code can run in it (:func:`install_stack_dump`).

Run as ``python -m beacon_ipy.jupyter.kernel -f {connection_file}`` (what the kernelspec
written by ``beacon-ipy install-kernel`` does). This module imports only ``sys`` at
import time so that the patching really comes first.
"""

from __future__ import annotations

import sys

#: What the loop policy's new loops are built on; set by :func:`install_loop_policy`.
_native_selector_factory = None


def patch() -> None:
    """Monkey-patch the process for gevent, leaving threads native (step 1)."""
    from gevent import monkey

    monkey.patch_all(thread=False)


def install_loop_policy() -> None:
    """Steps 2 and 3: native selectors for new loops, the gevent hub for the main thread's.

    Must run in the main thread, after :func:`patch` and before ipykernel creates any
    IOLoop.
    """
    global _native_selector_factory
    import asyncio

    from gevent import monkey
    from gevent.selectors import GeventSelector

    native_selector = monkey.get_original("selectors", "DefaultSelector")
    _native_selector_factory = native_selector

    class NativeSelectorPolicy(asyncio.DefaultEventLoopPolicy):
        """New event loops (the kernel's worker threads) select natively, not in gevent."""

        def new_event_loop(self) -> asyncio.AbstractEventLoop:
            return asyncio.SelectorEventLoop(native_selector())

    asyncio.set_event_loop_policy(NativeSelectorPolicy())
    main_loop = asyncio.SelectorEventLoop(GeventSelector())
    asyncio.set_event_loop(main_loop)


#: The signal that makes the kernel print its threads' stacks (step 6).
STACK_DUMP_SIGNAL = "SIGUSR1"


def install_stack_dump() -> None:
    """Step 6: ``kill -USR1 <kernel pid>`` prints every thread's stack to stderr.

    Why: a greenlet that blocks the main thread for good (e.g. a threading lock held
    across I/O by another greenlet: threads are not patched) leaves the kernel silent,
    its cells queued and JupyterLab possibly showing "Idle" (the control channel's status
    messages). ``faulthandler`` dumps from C, so it works while the thread is blocked. It
    writes to the process's real stderr (ipykernel later redirects ``sys.stderr`` to the
    notebook).
    """
    import faulthandler
    import signal

    signum = getattr(signal, STACK_DUMP_SIGNAL, None)
    if signum is None or sys.__stderr__ is None or not hasattr(faulthandler, "register"):
        return  # Windows, or no stderr: nothing to dump to
    faulthandler.register(signum, file=sys.__stderr__, all_threads=True, chain=False)


def _cwd() -> str:
    import os

    return os.getcwd()


def main(argv: list[str] | None = None) -> None:
    """Start the beacon kernel (``argv`` as for ``python -m ipykernel_launcher``)."""
    patch()
    install_loop_policy()
    install_stack_dump()

    from ipykernel.kernelapp import IPKernelApp

    from beacon_ipy.jupyter import eventloop

    eventloop.mark_beacon_kernel()
    # What IPKernelApp.launch_instance does, plus step 5: interrupts during a cell go to
    # the cell, never to a background greenlet that happens to run at that moment.
    app = IPKernelApp.instance()
    app.initialize(argv)
    if app.kernel is not None:
        eventloop.install_interrupt_guard(app.kernel)
    app.start()


if __name__ == "__main__":
    # As ipykernel_launcher does: drop the cwd from sys.path while the kernel loads (a
    # notebook folder holding e.g. "selectors.py" must not shadow the stdlib); IPython
    # puts it back for user code.
    if sys.path and (sys.path[0] == "" or sys.path[0] == _cwd()):
        del sys.path[0]
    main()
