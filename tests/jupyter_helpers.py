"""Real Jupyter kernels for tests: start, execute, collect output, all with deadlines.

Kernelspecs are written into a temporary folder handed to jupyter_client explicitly
(and also exported as ``JUPYTER_PATH`` for nbclient-style users), never into the user's
real kernelspec folders. The kernel process inherits the test environment, so
``BEACON_REDIS_URL`` points at the session's test Redis.
"""

from __future__ import annotations

import os
import queue
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

from beacon_ipy.jupyter.kernelspec import KERNEL_NAME, write_kernelspec

STOCK_KERNEL_NAME = "python3"
START_TIMEOUT = 30.0


def write_kernelspecs(root: str | Path) -> Path:
    """Write the ``beacon`` and a stock ``python3`` kernelspec under ``root``.

    Returns the ``kernels`` folder (``root/share/jupyter/kernels``); ``root/share/jupyter``
    is what ``JUPYTER_PATH`` should point at.
    """
    from ipykernel.kernelspec import write_kernel_spec

    kernels = Path(root) / "share" / "jupyter" / "kernels"
    write_kernelspec(kernels / KERNEL_NAME)
    write_kernel_spec(kernels / STOCK_KERNEL_NAME)
    return kernels


@dataclass
class Result:
    """What one ``execute_request`` produced."""

    status: str = ""
    stdout: str = ""
    stderr: str = ""
    result: str | None = None  # text/plain of the execute_result, if any
    ename: str | None = None
    evalue: str | None = None
    traceback: list[str] = field(default_factory=list)
    messages: list[dict] = field(default_factory=list)
    reply: dict = field(default_factory=dict)  # the execute_reply content (payloads, ...)

    def check(self) -> Result:
        """Raise with the kernel's traceback unless the cell succeeded."""
        if self.status != "ok":
            tb = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(self.traceback))
            raise AssertionError(f"cell failed: {self.ename}: {self.evalue}\n{tb}\n"
                                 f"stdout={self.stdout!r} stderr={self.stderr!r}")
        return self


class Kernel:
    """A started kernel with a blocking client."""

    def __init__(self, manager: KernelManager):
        self.manager = manager
        self.client = manager.client()
        self._stash: dict[tuple[str, str], list[dict]] = {}
        self.client.start_channels()
        self.client.wait_for_ready(timeout=START_TIMEOUT)

    # -- running code -----------------------------------------------------------------

    def submit(self, code: str, subshell_id: str | None = None) -> str:
        """Send ``code`` for execution without waiting; return the request's msg id.

        With ``subshell_id`` the request goes to that subshell (ipykernel >= 7).
        """
        if subshell_id is None:
            return self.client.execute(code, store_history=False, allow_stdin=False)
        content = {"code": code, "silent": False, "store_history": False,
                   "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}
        msg = self.client.session.msg("execute_request", content)
        msg["header"]["subshell_id"] = subshell_id
        self.client.shell_channel.send(msg)
        return msg["header"]["msg_id"]

    def create_subshell(self, timeout: float = 10.0) -> str:
        """Ask the kernel for a new subshell (control channel); return its id."""
        msg = self.client.session.msg("create_subshell_request", {})
        self.client.control_channel.send(msg)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no create_subshell_reply in time")
            try:
                reply = self.client.get_control_msg(timeout=remaining)
            except queue.Empty:
                raise TimeoutError("no create_subshell_reply in time") from None
            if reply["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
                assert reply["content"]["status"] == "ok", reply["content"]
                return reply["content"]["subshell_id"]

    def collect(self, msg_id: str, timeout: float = 20.0) -> Result:
        """Gather the iopub output of request ``msg_id`` until the kernel is idle again,
        then its reply. Raises ``TimeoutError`` after ``timeout`` seconds.

        Messages belonging to other requests are kept for their own ``collect`` (several
        requests may run at once, e.g. on subshells).
        """
        deadline = time.monotonic() + timeout
        res = Result()
        while True:
            msg = self._next("iopub", msg_id, deadline)
            res.messages.append(msg)
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                if content["name"] == "stdout":
                    res.stdout += content["text"]
                else:
                    res.stderr += content["text"]
            elif kind == "execute_result":
                res.result = content["data"].get("text/plain")
            elif kind == "error":
                res.ename, res.evalue = content["ename"], content["evalue"]
                res.traceback = content["traceback"]
            elif kind == "status" and content["execution_state"] == "idle":
                break
        reply = self._next("shell", msg_id, deadline)
        res.reply = reply["content"]
        res.status = reply["content"]["status"]
        if res.status == "error" and res.ename is None:
            res.ename = reply["content"].get("ename")
            res.evalue = reply["content"].get("evalue")
        return res

    def execute(self, code: str, timeout: float = 20.0) -> Result:
        """Run ``code`` and return its :class:`Result` (whatever its status)."""
        return self.collect(self.submit(code), timeout)

    def run(self, code: str, timeout: float = 20.0) -> Result:
        """Run ``code`` and fail the test, with the kernel's traceback, if it raised."""
        return self.execute(code, timeout).check()

    def eval(self, expr: str, timeout: float = 20.0) -> Any:
        """The value of a Python literal expression evaluated in the kernel."""
        import ast

        res = self.run(expr, timeout)
        assert res.result is not None, f"{expr!r} produced no result: {res}"
        return ast.literal_eval(res.result)

    def wait_until(self, expr: str, timeout: float = 20.0, interval: float = 0.05) -> Any:
        """Re-evaluate ``expr`` in the kernel until it is truthy; return its value.

        Each evaluation is a separate cell, so between two polls the kernel is idle: this
        is how tests prove that background greenlets progress while the kernel idles.
        """
        deadline = time.monotonic() + timeout
        while True:
            value = self.eval(expr, timeout=max(deadline - time.monotonic(), 1.0))
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"{expr!r} still {value!r} after {timeout} s")
            # Not synchronisation: just spacing the polls (each one is a full round trip).
            time.sleep(interval)

    def wait_for_stream(self, msg_id: str, text: str, timeout: float = 20.0) -> None:
        """Wait until request ``msg_id`` prints ``text`` (the cell is then running).

        The messages read stay available to a later :meth:`collect` of ``msg_id``.
        """
        deadline = time.monotonic() + timeout
        seen: list[dict] = []
        try:
            while True:
                msg = self._next("iopub", msg_id, deadline)
                seen.append(msg)
                if msg["msg_type"] == "stream" and text in "".join(
                        m["content"]["text"] for m in seen if m["msg_type"] == "stream"):
                    return
                if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                    raise AssertionError(f"cell ended without printing {text!r}: {seen}")
        finally:
            self._stash.setdefault(("iopub", msg_id), [])[:0] = seen

    def _next(self, channel: str, msg_id: str, deadline: float) -> dict:
        """The next ``channel`` message whose parent is ``msg_id``; others are stashed."""
        pending = self._stash.get((channel, msg_id))
        if pending:
            return pending.pop(0)
        getter = self.client.get_iopub_msg if channel == "iopub" else self.client.get_shell_msg
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {channel} message for {msg_id} in time")
            try:
                msg = getter(timeout=remaining)
            except queue.Empty:
                raise TimeoutError(f"no {channel} message for {msg_id} in time") from None
            parent = msg["parent_header"].get("msg_id")
            if parent == msg_id:
                return msg
            if parent:
                self._stash.setdefault((channel, parent), []).append(msg)

    # -- lifecycle --------------------------------------------------------------------

    def interrupt(self) -> None:
        self.manager.interrupt_kernel()

    def restart(self) -> None:
        """Restart the kernel process and wait until the new one answers."""
        self.manager.restart_kernel(now=True)
        self.client.wait_for_ready(timeout=START_TIMEOUT)

    def pid(self) -> int:
        return self.eval("__import__('os').getpid()")

    def shutdown(self) -> None:
        try:
            self.client.stop_channels()
        finally:
            if self.manager.has_kernel:
                self.manager.shutdown_kernel(now=True)


@contextmanager
def started_kernel(kernels_dir: str | Path, name: str = KERNEL_NAME,
                   env: dict[str, str] | None = None) -> Iterator[Kernel]:
    """A running kernel ``name`` from the kernelspecs in ``kernels_dir``; shut down after."""
    ksm = KernelSpecManager(kernel_dirs=[str(kernels_dir)])
    manager = KernelManager(kernel_name=name, kernel_spec_manager=ksm)
    kernel_env = dict(os.environ)
    # The user's IPython profile (startup files, extensions) stays out of tests.
    ipython_dir = Path(kernels_dir).parent / "ipython"
    ipython_dir.mkdir(exist_ok=True)
    kernel_env["IPYTHONDIR"] = str(ipython_dir)
    kernel_env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
    kernel_env.update(env or {})
    manager.start_kernel(env=kernel_env, cwd=str(ipython_dir))
    kernel = None
    try:
        kernel = Kernel(manager)
        yield kernel
    finally:
        if kernel is not None:
            kernel.shutdown()
        elif manager.has_kernel:
            manager.shutdown_kernel(now=True)


def wait_for_list(key: str, timeout: float = 10.0) -> bytes:
    """First item pushed on Redis list ``key``, waited for without sending any kernel
    anything: how tests prove a kernel's greenlets ran while it was idle."""
    from beacon_ipy.connection import get_redis

    redis = get_redis()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        item = redis.blpop([key], timeout=1)
        if item is not None:
            return item[1]
    raise AssertionError(f"nothing arrived on {key} within {timeout} s")
