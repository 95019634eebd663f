"""Run the project's notebooks (``notebooks/``) headless on a real kernel, and read what they did.

- :func:`prepare` copies ``notebooks/`` into a work folder (so nothing is written next to
  the repository's notebooks) and loads one notebook with test parameters injected in a
  cell after its ``parameters`` cell, as papermill does.
- :class:`NotebookRun` executes it cell by cell with nbclient on the ``beacon`` kernel
  from a temporary kernelspec, and can then query the live kernel: evaluate expressions
  (:meth:`~NotebookRun.eval`, :meth:`~NotebookRun.wait_until`, which poll with a
  deadline while the kernel idles in between) and play the browser (send a widget
  update or a button click over the widget's comm).
- Output helpers read the executed notebook: text, widget views, widget state.

nbclient keeps only the messages whose parent is the running cell (NOTES §3); widget
updates a greenlet sends while the kernel is idle are therefore checked in the kernel
(through the live objects), not in the stored widget state.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbformat import NotebookNode

from beacon_ipy.jupyter.kernelspec import KERNEL_NAME

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS_DIR = ROOT / "notebooks"
NOTEBOOKS = ("quickstart", "live_scans", "cached_values")
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


# -- preparing -------------------------------------------------------------------------


def copy_notebooks(workdir: Path) -> Path:
    """Copy ``notebooks/`` (notebooks and helper scripts) into ``workdir``; return it."""
    shutil.copytree(NOTEBOOKS_DIR, workdir, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    return workdir


def inject_parameters(nb: NotebookNode, **params: Any) -> NotebookNode:
    """Insert a cell assigning ``params`` right after the cell tagged ``parameters``."""
    index = next((i for i, c in enumerate(nb.cells)
                  if "parameters" in c.get("metadata", {}).get("tags", [])), None)
    assert index is not None, "the notebook has no cell tagged 'parameters'"
    source = "\n".join(f"{name} = {value!r}" for name, value in params.items())
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(index + 1, cell)
    return nb


def prepare(name: str, workdir: Path, **params: Any) -> NotebookNode:
    """Copy the notebooks into ``workdir`` and load ``name`` with ``params`` injected."""
    copy_notebooks(workdir)
    nb = nbformat.read(workdir / f"{name}.ipynb", as_version=4)
    return inject_parameters(nb, **params) if params else nb


# -- reading outputs -------------------------------------------------------------------


def code_cells(nb: NotebookNode) -> list[NotebookNode]:
    return [c for c in nb.cells if c.cell_type == "code"]


def find_cell(nb: NotebookNode, fragment: str, exact: bool = False) -> NotebookNode:
    """The first code cell whose source contains ``fragment`` (is ``fragment``: exact)."""
    for cell in code_cells(nb):
        if (cell.source.strip() == fragment) if exact else (fragment in cell.source):
            return cell
    raise AssertionError(f"no code cell contains {fragment!r}")


def text(cell: NotebookNode) -> str:
    """Everything a cell printed or returned as text (stdout, stderr, text/plain)."""
    parts = []
    for out in cell.get("outputs", []):
        if out.output_type == "stream":
            parts.append(out.text)
        elif out.output_type in ("execute_result", "display_data"):
            parts.append(out.data.get("text/plain", "") + "\n")
        elif out.output_type == "error":
            parts.append(f"{out.ename}: {out.evalue}\n")
    return _ANSI.sub("", "".join(parts))


def result(cell: NotebookNode) -> str | None:
    """The text/plain of a cell's execute_result (its last expression), if any."""
    for out in cell.get("outputs", []):
        if out.output_type == "execute_result":
            return out.data.get("text/plain")
    return None


def widget_ids(cell: NotebookNode) -> list[str]:
    """Model ids of the widget views a cell displayed."""
    return [out.data[WIDGET_VIEW]["model_id"] for out in cell.get("outputs", [])
            if out.output_type in ("execute_result", "display_data") and WIDGET_VIEW in out.data]


def widget_state(nb: NotebookNode, model_id: str) -> dict:
    """The state nbclient recorded for widget ``model_id`` (model name, traits)."""
    states = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    assert model_id in states, f"no recorded state for widget {model_id}"
    return {"_model_name": states[model_id].get("model_name"), **states[model_id]["state"]}


def children(nb: NotebookNode, model_id: str) -> list[str]:
    """Model ids of the children of container widget ``model_id`` (a Box)."""
    refs = widget_state(nb, model_id).get("children", [])
    return [ref.removeprefix("IPY_MODEL_") for ref in refs]


def bound_control(nb: NotebookNode, view_id: str) -> tuple[str, dict]:
    """The control of a displayed channel binding (``bind()`` shows an HBox holding the
    control and an error line): its model id and recorded state."""
    box = widget_state(nb, view_id)
    assert box["_model_name"] == "HBoxModel", box
    control = children(nb, view_id)[0]
    return control, widget_state(nb, control)


def errors(nb: NotebookNode) -> list[str]:
    """Error outputs and stderr tracebacks of every cell."""
    found = []
    for i, cell in enumerate(code_cells(nb)):
        for out in cell.get("outputs", []):
            if out.output_type == "error":
                found.append(f"cell {i}: {out.ename}: {out.evalue}")
            elif out.output_type == "stream" and out.name == "stderr" and "Traceback" in out.text:
                found.append(f"cell {i} stderr: {out.text}")
    return found


# -- running ---------------------------------------------------------------------------


class NotebookRun:
    """A notebook being executed by nbclient on a live ``beacon`` kernel."""

    def __init__(self, nb: NotebookNode, workdir: Path, client: NotebookClient):
        self.nb = nb
        self.workdir = workdir
        self.client = client
        self.next_index = 0
        self.cell_times: list[tuple[str, float]] = []

    def run_cell(self, cell: NotebookNode) -> NotebookNode:
        index = self.nb.cells.index(cell)
        t0 = time.monotonic()
        self.client.execute_cell(cell, index)
        self.cell_times.append((cell.source.splitlines()[0] if cell.source else "",
                                time.monotonic() - t0))
        return cell

    def run_until(self, fragment: str | None = None) -> None:
        """Run the next cells up to (excluding) the first one containing ``fragment``
        (all remaining cells if None)."""
        while self.next_index < len(self.nb.cells):
            cell = self.nb.cells[self.next_index]
            if fragment is not None and cell.cell_type == "code" and fragment in cell.source:
                return
            self.next_index += 1
            if cell.cell_type == "code":
                self.run_cell(cell)
        if fragment is not None:
            raise AssertionError(f"no cell left containing {fragment!r}")

    def run_all(self) -> None:
        self.run_until(None)

    def execute(self, code: str) -> NotebookNode:
        """Run ``code`` in the kernel as an extra cell (appended to the notebook, after
        the cells already run); return the executed cell."""
        cell = nbformat.v4.new_code_cell(code)
        cell.metadata["tags"] = ["test-check"]
        self.nb.cells.append(cell)
        return self.run_cell(cell)

    def eval(self, expr: str) -> Any:
        """The value of ``expr`` (a Python literal once repr'd) evaluated in the kernel."""
        value = result(self.execute(expr))
        assert value is not None, f"{expr!r} gave no result"
        return ast.literal_eval(value)

    def wait_until(self, expr: str, timeout: float = 15.0, what: str | None = None) -> Any:
        """Evaluate ``expr`` in the kernel until it is truthy; return that value.

        Each poll is a separate cell: the kernel idles in between, so background
        greenlets (channel listeners, widget throttles) make progress."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.eval(expr)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"{what or expr!r} still {value!r} after {timeout} s")
            time.sleep(0.05)  # spacing the polls, each is a full round trip

    def send_comm(self, model_id: str, data: dict) -> None:
        """Send what a browser sends to widget ``model_id`` (a comm message)."""
        kc = self.client.kc
        msg = kc.session.msg("comm_msg", {"comm_id": model_id, "data": data})
        kc.shell_channel.send(msg)

    def set_widget(self, model_id: str, **state: Any) -> None:
        """Change widget traits as the user would in the browser (e.g. move a slider)."""
        self.send_comm(model_id, {"method": "update", "state": state, "buffer_paths": []})

    def click(self, model_id: str) -> None:
        """Click a Button widget as the browser does."""
        self.send_comm(model_id, {"method": "custom", "content": {"event": "click"}})

    def record_widget_state(self) -> None:
        """Store nbclient's view of the widgets in the notebook's metadata."""
        self.client.set_widgets_metadata()

    def check_no_errors(self) -> None:
        found = errors(self.nb)
        assert not found, "\n".join(found)


def kernel_env(workdir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The kernel's environment: the test's (BEACON_REDIS_URL included), a private
    IPython profile folder, and ``extra``."""
    ipython_dir = workdir / ".ipython"
    ipython_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update({"IPYTHONDIR": str(ipython_dir), "PYDEVD_DISABLE_FILE_VALIDATION": "1"})
    env.update(extra or {})
    return env


@contextmanager
def notebook_run(nb: NotebookNode, workdir: Path, kernels_dir: Path, *,
                 timeout: float = 60.0, env: dict[str, str] | None = None,
                 on_start: Callable[[NotebookRun], None] | None = None) -> Iterator[NotebookRun]:
    """A :class:`NotebookRun` whose kernel (``beacon`` from ``kernels_dir``) runs in
    ``workdir``; shut down on exit (widget state recorded first)."""
    ksm = KernelSpecManager(kernel_dirs=[str(kernels_dir)])
    km = AsyncKernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=ksm)
    client = NotebookClient(nb, km=km, kernel_name=KERNEL_NAME, timeout=timeout,
                            record_timing=True, resources={"metadata": {"path": str(workdir)}})
    with client.setup_kernel(env=kernel_env(workdir, env)):
        run = NotebookRun(nb, workdir, client)
        if on_start is not None:
            on_start(run)
        try:
            yield run
        finally:
            run.record_widget_state()
            if os.environ.get("NB_TIMES"):
                print("\n".join(f"{t:6.2f}s {src}" for src, t in run.cell_times))
