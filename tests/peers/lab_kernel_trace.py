"""IPython startup file for the browser tests: a trace of what the kernel receives.

:class:`browser_helpers.LabServer` copies this file into the private IPython folder's
``profile_default/startup/`` and sets ``BEACON_IPY_KERNEL_TRACE`` to a folder; every
kernel the server starts then writes ``kernel-<pid>.log`` there, one line per step of
every shell and control message (time, thread, step, msg_type, msg_id):

- ``shell-thread recv``: the shell-channel thread got it from the server (ZMQ);
- ``main recv`` / ``main done``: the main thread got it from the shell-channel thread
  (and whether the main thread's asyncio lock was held by another message), finished;
- ``control recv`` / ``control done``: the same on the control thread.

``SIGUSR1`` makes the kernel dump every thread's stack into the same log
(``faulthandler``: works even when the main thread is blocked). With this, a Run All
that never starts can be told apart: the browser never sent the requests, the kernel's
shell channel never got them, or the kernel got them and did not run them.

Runs in the kernel during ``IPKernelApp.initialize`` (before ``kernel.start`` binds its
handlers), so wrapping the instance's handlers takes effect. Test tool only.
"""

import faulthandler
import json
import os
import signal
import threading
import time


def _install() -> None:
    folder = os.environ.get("BEACON_IPY_KERNEL_TRACE")
    ipython = get_ipython()  # noqa: F821 - an IPython startup file
    kernel = getattr(ipython, "kernel", None)
    if not folder or kernel is None:
        return
    path = os.path.join(folder, f"kernel-{os.getpid()}.log")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    start = time.time()

    def log(step: str, what: str = "") -> None:
        line = (f"{time.time():.3f} +{time.time() - start:7.3f} "
                f"{threading.current_thread().name:<20} {step:<18} {what}\n")
        os.write(fd, line.encode())  # one write per line: atomic between threads

    log(f"start pid={os.getpid()} subshells={kernel.shell_channel_thread is not None}")
    faulthandler.register(signal.SIGUSR1, file=fd, all_threads=True, chain=False)

    channel_main = kernel.shell_channel_thread_main
    shell_main = kernel.shell_main
    dispatch_control = kernel.dispatch_control

    async def traced_channel_main(msg):
        log("shell-thread recv", _describe(kernel, msg))
        await channel_main(msg)

    async def traced_shell_main(subshell_id, msg):
        lock = getattr(kernel, "_main_asyncio_lock", None)
        held = bool(lock is not None and lock.locked())
        what = _describe(kernel, msg)
        log(f"main recv{' (locked)' if held else ''}", what)
        try:
            await shell_main(subshell_id, msg)
        finally:
            log("main done", what)

    async def traced_dispatch_control(msg):
        what = _describe(kernel, msg)
        log("control recv", what)
        try:
            await dispatch_control(msg)
        finally:
            log("control done", what)

    kernel.shell_channel_thread_main = traced_channel_main
    kernel.shell_main = traced_shell_main
    kernel.dispatch_control = traced_dispatch_control


def _describe(kernel, msg) -> str:
    """``msg_type msg_id [subshell=...]`` of a raw message, read from its header frame
    without the session (whose signature check refuses a message seen twice)."""
    try:
        _, frames = kernel.session.feed_identities(msg, copy=False)
        raw = frames[1]
        header = json.loads(raw.bytes if hasattr(raw, "bytes") else raw)
        return (f"{header.get('msg_type')} {header.get('msg_id')}"
                f"{' subshell=' + header['subshell_id'] if header.get('subshell_id') else ''}")
    except Exception as exc:  # noqa: BLE001 - a trace line, whatever happens
        return f"(undecodable: {exc!r})"


_install()
del _install
