"""Playing the Jupyter front end for widget tests: watch comm traffic, send widget updates.

Built on :mod:`jupyter_helpers` (real kernels through jupyter_client). Widget updates
made by greenlets while the kernel is idle carry whatever parent the kernel last had,
so nbclient would drop them (NOTES §3); these helpers read the kernel client's iopub
channel directly instead, and hand every message they are not looking for back to the
:class:`~jupyter_helpers.Kernel`'s stash so that its ``collect`` still sees them.
"""

from __future__ import annotations

import queue
import re
import time
from dataclasses import dataclass

from jupyter_helpers import Kernel, Result


@dataclass
class CommUpdate:
    """A ``comm_msg`` sent by the kernel to one widget model."""

    received: float  # time.perf_counter() when the test read it
    method: str  # "update" (kernel-side change) or "echo_update" (ack of a front-end change)
    state: dict


class CommWatcher:
    """Reads iopub directly and records the ``comm_msg``s sent to the given comm ids."""

    def __init__(self, kernel: Kernel):
        self.kernel = kernel
        self.updates: dict[str, list[CommUpdate]] = {}

    def _pump(self, timeout: float) -> bool:
        """Read one iopub message (waiting up to ``timeout``); False if none came."""
        try:
            msg = self.kernel.client.get_iopub_msg(timeout=max(timeout, 0.0))
        except queue.Empty:
            return False
        now = time.perf_counter()
        if msg["msg_type"] == "comm_msg":
            content = msg["content"]
            data = content.get("data", {})
            self.updates.setdefault(content["comm_id"], []).append(
                CommUpdate(now, data.get("method", ""), data.get("state", {})))
            return True
        parent = msg["parent_header"].get("msg_id")
        if parent:  # not ours: give it back to the kernel helper's collect()
            self.kernel._stash.setdefault(("iopub", parent), []).append(msg)
        return True

    def wait(self, comm_id: str, predicate, timeout: float = 10.0) -> CommUpdate:
        """The first (new or already recorded) update of ``comm_id`` matching ``predicate``."""
        deadline = time.monotonic() + timeout
        checked = 0
        while True:
            seen = self.updates.get(comm_id, [])
            for update in seen[checked:]:
                if predicate(update):
                    return update
            checked = len(seen)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no matching comm update for {comm_id} within "
                                     f"{timeout} s; got {[u.state for u in seen]}")
            self._pump(min(remaining, 0.5))

    def wait_any(self, comm_ids, predicate, timeout: float = 10.0) -> CommUpdate:
        """The first update of any of ``comm_ids`` matching ``predicate``."""
        deadline = time.monotonic() + timeout
        while True:
            for comm_id in comm_ids:
                for update in self.updates.get(comm_id, []):
                    if predicate(update):
                        return update
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no matching comm update for {comm_ids} within "
                                     f"{timeout} s")
            self._pump(min(remaining, 0.5))

    def drain(self, quiet: float = 0.3, timeout: float = 10.0) -> None:
        """Read until nothing arrives for ``quiet`` seconds (bounded by ``timeout``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._pump(quiet):
            pass

    def values(self, comm_id: str, key: str = "value") -> list:
        """The ``key`` of every kernel-side ``update`` of ``comm_id`` so far, in order."""
        return [u.state[key] for u in self.updates.get(comm_id, [])
                if u.method == "update" and key in u.state]


def send_comm(kernel: Kernel, comm_id: str, data: dict, subshell_id: str | None = None) -> str:
    """Send a ``comm_msg`` as a front end does; returns the msg id.

    With ``subshell_id`` it goes to that subshell, as JupyterLab >= 4.4 sends widget
    messages to a kernel that has subshells: ipykernel 7 then handles it in the
    subshell's thread, not the main one.
    """
    msg = kernel.client.session.msg("comm_msg", {"comm_id": comm_id, "data": data})
    if subshell_id is not None:
        msg["header"]["subshell_id"] = subshell_id
    kernel.client.shell_channel.send(msg)
    return msg["header"]["msg_id"]


def send_update(kernel: Kernel, comm_id: str, state: dict,
                subshell_id: str | None = None) -> str:
    """Send what a front end sends when the user moves a widget; returns the msg id."""
    return send_comm(kernel, comm_id, {"method": "update", "state": state,
                                       "buffer_paths": []}, subshell_id)


def send_click(kernel: Kernel, comm_id: str, subshell_id: str | None = None) -> str:
    """Send what a front end sends when the user clicks a Button; returns the msg id."""
    return send_comm(kernel, comm_id, {"method": "custom", "content": {"event": "click"}},
                     subshell_id)


def paged_text(reply: dict) -> str:
    """The text a front end would page for this reply (``%magic?``), ANSI codes removed."""
    text = "".join(p.get("data", {}).get("text/plain", "") for p in reply.get("payload", [])
                   if p.get("source") == "page")
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def widget_views(result: Result) -> list[str]:
    """Model ids of the widget views a cell displayed (display_data or execute_result)."""
    ids = []
    for msg in result.messages:
        if msg["msg_type"] in ("display_data", "execute_result"):
            view = msg["content"]["data"].get("application/vnd.jupyter.widget-view+json")
            if view:
                ids.append(view["model_id"])
    return ids


def comm_models(result: Result) -> dict[str, str]:
    """comm id -> widget model name, for the widgets a cell opened."""
    return {m["content"]["comm_id"]: m["content"]["data"]["state"].get("_model_name", "")
            for m in result.messages if m["msg_type"] == "comm_open"}
