"""A real JupyterLab in a real browser, for tests: server, headless Chromium, page probes.

- :class:`LabServer` starts JupyterLab the way a newcomer does (``beacon-ipy lab``) on
  127.0.0.1, on a free port, with a token, the app exposed to page scripts
  (``window.jupyterapp``), the announcements pop-up disabled (``labconfig/page_config.json``
  in a private ``JUPYTER_CONFIG_DIR``), and private Jupyter/IPython/cache folders; the
  kernels inherit the test's ``BEACON_REDIS_URL``.
- :func:`chromium` launches Debian's ``/usr/bin/chromium`` through Python playwright (never
  ``playwright install``) with the flags of NOTES §3.
- :class:`LabPage` wraps a page: console errors and page errors collected from the start,
  waiting for the notebook's kernel, running cells, and reading the ipympl canvas pixels
  (``getImageData``: independent of scrolling, unlike element screenshots).
- Evidence for hangs: the page records its kernel connection's traffic and status
  (``TRACE_INIT``), every kernel records what its shell and control channels received
  (``peers/lab_kernel_trace.py``, an IPython startup file in the private IPython
  folder); :meth:`LabPage.diagnosis` says in one line whether execute requests were
  sent, received and taken up, :meth:`LabPage.write_evidence` writes it all, with the
  kernels' thread stacks, next to the server's log.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import browser_trace

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
ANNOUNCEMENTS = "@jupyterlab/apputils-extension:announcements"
KERNEL_TRACE = Path(__file__).resolve().parent / "peers" / "lab_kernel_trace.py"


def have_chromium() -> bool:
    return Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LabServer:
    """``beacon-ipy lab`` serving ``workdir`` (see the module docstring); a context manager."""

    def __init__(self, workdir: Path, home: Path, log_path: Path, notebook: str):
        self.workdir = workdir
        self.home = home
        self.log_path = log_path
        self.notebook = notebook
        self.port = free_port()
        self.token = os.urandom(12).hex()
        self.proc: subprocess.Popen | None = None
        self._log = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return f"{self.base}/{path.lstrip('/')}?token={self.token}"

    @property
    def trace_dir(self) -> Path:
        """Where the kernels write their traces (``kernel-<pid>.log``, see
        ``peers/lab_kernel_trace.py``)."""
        return self.home / "kernel-trace"

    def kernel_traces(self) -> dict[int, str]:
        """The kernels' traces: {pid: text}."""
        return {int(p.stem.split("-")[1]): p.read_text()
                for p in sorted(self.trace_dir.glob("kernel-*.log"))}

    def env(self) -> dict[str, str]:
        startup = self.home / "ipython" / "profile_default" / "startup"
        startup.mkdir(parents=True, exist_ok=True)
        shutil.copy(KERNEL_TRACE, startup / "00-beacon-test-trace.py")
        self.trace_dir.mkdir(parents=True, exist_ok=True)
        config = self.home / "jupyter-config"
        (config / "labconfig").mkdir(parents=True, exist_ok=True)
        (config / "labconfig" / "page_config.json").write_text(
            json.dumps({"disabledExtensions": {ANNOUNCEMENTS: True}}))
        env = dict(os.environ)
        env.update({
            "JUPYTER_CONFIG_DIR": str(config),
            "JUPYTER_DATA_DIR": str(self.home / "jupyter-data"),
            "JUPYTER_RUNTIME_DIR": str(self.home / "jupyter-runtime"),
            "IPYTHONDIR": str(self.home / "ipython"),
            "XDG_CACHE_HOME": str(self.home / "cache"),  # where `lab` writes its kernelspec
            "PYDEVD_DISABLE_FILE_VALIDATION": "1",
            "BEACON_IPY_KERNEL_TRACE": str(self.trace_dir),
        })
        env.pop("JUPYTER_PATH", None)
        return env

    def start(self, timeout: float = 60.0) -> LabServer:
        cmd = [sys.executable, "-m", "beacon_ipy.cli", "lab", "--dir", str(self.workdir),
               "--notebook", self.notebook, "--no-browser", "--port", str(self.port),
               "--allow-root", "--ServerApp.ip=127.0.0.1",
               f"--IdentityProvider.token={self.token}",
               "--LabApp.expose_app_in_browser=True"]
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, env=self.env(), stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited ({self.proc.returncode}):\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url("api/status"), timeout=2) as reply:
                    if reply.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"JupyterLab not answering after {timeout} s:\n{self.log()}")
            time.sleep(0.2)  # polling the server's port, with a deadline

    def log(self) -> str:
        if self._log is not None:
            self._log.flush()
        return self.log_path.read_text()[-5000:] if self.log_path.exists() else ""

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM (the server shuts its kernels down), then kill the process group."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> LabServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


@contextmanager
def chromium(viewport: tuple[int, int] = (1280, 1000)):
    """A playwright page in headless Debian chromium."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                     headless=True)
        try:
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            yield page
        finally:
            browser.close()


_KERNEL = """() => {
  const app = window.jupyterapp;
  const w = app && app.shell.currentWidget;
  const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  return k ? {name: k.name, status: k.status, connection: k.connectionStatus} : null;
}"""

# Runs code on the current notebook's kernel; resolves with its stdout (or "ERROR ...").
_KERNEL_RUN = """async (code) => {
  const w = window.jupyterapp.shell.currentWidget;
  const k = w.sessionContext.session.kernel;
  const future = k.requestExecute({code, silent: false, store_history: false});
  let out = '';
  future.onIOPub = (msg) => {
    const t = msg.header.msg_type;
    if (t === 'stream') out += msg.content.text;
    if (t === 'error') out = 'ERROR ' + msg.content.ename + ': ' + msg.content.evalue + out;
  };
  await future.done;
  return out;
}"""

# Has the kernel started a cell since ``since`` (Date.now() ms)? Its execute_input seen
# by the page, or a numbered prompt. (Not "the kernel is busy": JupyterLab's kernel status
# also follows the control channel's busy/idle.)
_CELLS_STARTED = """(since) => {
  const T = window.__beaconTrace;
  if (T && T.events.some(e => e.ev === 'recv' && e.type === 'execute_input' && e.t >= since))
    return true;
  return Array.from(document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt'))
    .some(p => /\\[\\d+\\]/.test(p.textContent));
}"""

# Have all code cells run? (every prompt numbered; none queued "[*]" or never run "[ ]")
_CELLS_DONE = """() => {
  const prompts = Array.from(document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt'));
  return prompts.length > 0 && prompts.every(p => /^\\[\\d+\\]:?$/.test(p.textContent.trim()));
}"""

# Pixels of the first ipympl canvas: size, painted pixels, pixels of matplotlib's first
# line colour (C0, #1f77b4: the current scan's counter), saturated pixels (``colour``:
# channels spread > 60, what colour-mapped images, a mesh map or a detector frame, paint)
# and a hash of the image.
_CANVAS = """() => {
  const plot = document.querySelector('.jupyter-matplotlib');
  if (plot) plot.scrollIntoView({block: 'nearest'});  // a user watches the plot
  const c = document.querySelector('.jupyter-matplotlib-canvas-div canvas');
  if (!c || !c.width || !c.height) return null;
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let painted = 0, line = 0, colour = 0, hash = 0;
  for (let i = 0; i < d.length; i += 4) {
    const r = d[i], g = d[i + 1], b = d[i + 2], a = d[i + 3];
    if (a > 0 && (r < 245 || g < 245 || b < 245)) painted++;
    if (a > 200 && Math.abs(r - 31) < 25 && Math.abs(g - 119) < 25 && Math.abs(b - 180) < 25) line++;
    if (a > 200 && Math.max(r, g, b) - Math.min(r, g, b) > 60) colour++;
    hash = (Math.imul(hash, 31) + r * 7 + g * 3 + b + a) >>> 0;
  }
  return {width: c.width, height: c.height, painted, line, colour, hash};
}"""


class LabPage:
    """A JupyterLab page with error collection and probes."""

    def __init__(self, page: Any, server: LabServer | None = None):
        self.page = page
        self.server = server
        self.created = time.time()
        self.console: list[tuple[float, str, str]] = []
        self.page_errors: list[str] = []
        page.on("console", lambda m: self.console.append((time.time(), m.type, m.text)))
        page.on("pageerror", lambda e: self.page_errors.append(str(e)))
        page.add_init_script(browser_trace.TRACE_INIT)

    def console_text(self) -> str:
        """The page's console, one line per message, with wall-clock times."""
        return "\n".join(f"{t:.3f} {kind}: {text}" for t, kind, text in self.console)

    @property
    def js_errors(self) -> list[str]:
        return [text for _, kind, text in self.console if kind == "error"] + self.page_errors

    def open(self, url: str) -> None:
        self.page.goto(url)

    def kernel(self) -> dict | None:
        return self.page.evaluate(_KERNEL)

    def wait_kernel_idle(self, timeout: float = 60.0) -> dict:
        """Wait until the current notebook's kernel is connected and idle; return it."""
        self.page.wait_for_function(
            f"() => {{ const k = ({_KERNEL})(); "
            f"return k && k.status === 'idle' && k.connection === 'connected'; }}",
            timeout=timeout * 1000)
        return self.kernel()

    def command(self, name: str) -> None:
        """Start a JupyterLab command without waiting for it to finish."""
        self.page.evaluate(f"() => {{ window.jupyterapp.commands.execute({name!r}); }}")

    def run_all(self, start_timeout: float = 20.0) -> None:
        """Run all cells ("Run All") and return once the kernel has started the first.

        Seen twice in ~10 runs under load (before commit 32088ea): the first cells ran,
        the others stayed queued (``[*]``) and JupyterLab showed the kernel "Idle". The
        page and kernel traces (``write_evidence``) showed why: the kernel's main thread
        was blocked for good in ``bdgaps.data_store`` (a greenlet deadlock, fixed since;
        ``tests/test_kernel_blocked.py``) and "Idle" came from the control channel's
        status messages (the widget manager's ``create_subshell_request``; ``beacon-ipy
        lab`` now lists those as untracked), not from the main shell. Nothing was lost on the way and retrying Run All would not have
        helped, so there is no retry: if no cell starts within ``start_timeout`` s this
        fails, saying how many requests the page sent and the kernel received, with
        the evidence in a file."""
        start = time.time()
        self.command("notebook:run-all-cells")
        started = self._cells_started(start, start_timeout)
        if self.server is not None:
            browser_trace.record_run_all(self.server, start, started)
        if not started:
            evidence = self.write_evidence("runall", f"Run All at {start:.3f}; no cell "
                                           f"started within {start_timeout} s", start)
            raise AssertionError(f"Run All: no cell started within {start_timeout} s; "
                                 f"{self.diagnosis(start)}; evidence in {evidence}")

    def wait_cells_done(self, timeout: float = 60.0) -> None:
        """Wait until every code cell has run (all prompts numbered, none ``[*]``).

        Use this rather than "the kernel is idle" after Run All: JupyterLab's kernel
        status also turns idle at the end of a control request it does not ignore
        (jupyter_server's ``untracked_message_types``) while a cell still runs."""
        try:
            self.page.wait_for_function(_CELLS_DONE, timeout=timeout * 1000)
        except Exception as exc:  # noqa: BLE001 - playwright's TimeoutError
            evidence = self.write_evidence("cells", f"cells not done within {timeout} s")
            raise AssertionError(f"cells not all run within {timeout} s: {self.diagnosis()}; "
                                 f"evidence in {evidence}") from exc

    def diagnosis(self, since: float | None = None) -> str:
        """One line: prompts, and execute requests sent, received and taken up (see
        :func:`browser_trace.diagnosis`)."""
        return browser_trace.diagnosis(self.page, self.server,
                                       self.created if since is None else since)

    def during_cells(self) -> list[dict]:
        """Per cell run: the kernel statuses JupyterLab showed while it ran and the
        control requests the page sent meanwhile (:data:`browser_trace.DURING_CELLS`)."""
        return self.page.evaluate(browser_trace.DURING_CELLS)

    def write_evidence(self, name: str, title: str, since: float | None = None) -> Path | None:
        """Write what the page and the kernels did to ``<server log>.<name>.txt`` (see
        :func:`browser_trace.write_evidence`; ``since`` defaults to this page's creation)."""
        if self.server is None:
            return None
        return browser_trace.write_evidence(self.page, self.server, self.console_text(), name,
                                            title, self.created if since is None else since)

    def record_failure(self, artifacts_dir: Path, name: str, timeline: list[str]) -> None:
        """What a failed browser test leaves: a full-page screenshot
        (``browser-<name>-failure.png``), the evidence file (:meth:`write_evidence`) and
        the console log with the test's timeline (``browser-<name>-console.log``)."""
        self.page.screenshot(path=str(artifacts_dir / f"browser-{name}-failure.png"),
                             full_page=True)
        self.write_evidence("failure", "the test failed")
        (artifacts_dir / f"browser-{name}-console.log").write_text(
            self.console_text() + "\n" + "\n".join(timeline))

    def _cells_started(self, since: float, timeout: float) -> bool:
        try:
            self.page.wait_for_function(_CELLS_STARTED, arg=since * 1000,
                                        timeout=timeout * 1000)
            return True
        except Exception:  # noqa: BLE001 - playwright's TimeoutError
            return False

    def canvas(self) -> dict | None:
        return self.page.evaluate(_CANVAS)

    def kernel_run(self, code: str, timeout: float = 30.0) -> str:
        """Run ``code`` on the notebook's kernel (as the notebook's own client, outside
        any cell) and return its stdout; a Python error raises ``AssertionError``."""
        out = self.page.evaluate(_KERNEL_RUN, code)
        if out.startswith("ERROR "):
            raise AssertionError(f"kernel code failed: {out}\n{code}")
        return out

    def select_option(self, widget_class: str, label: str, *options: str) -> None:
        """Choose ``options`` (their labels) in the ipywidgets select of class
        ``widget_class`` (``widget-dropdown``, ``widget-select-multiple``) labelled
        ``label``, as a user does."""
        box = self.page.locator(f".{widget_class}", has=self.page.locator(
            ".widget-label", has_text=re.compile(f"^\\s*{re.escape(label)}\\s*$"))).first
        box.scroll_into_view_if_needed()
        box.locator("select").select_option(label=list(options))

    def selected_text(self, label: str) -> str | None:
        """What the ipywidgets dropdown labelled ``label`` shows (None if not rendered or
        nothing is selected: a blank dropdown)."""
        return self.page.evaluate(
            """(label) => {
              for (const w of document.querySelectorAll('.widget-dropdown')) {
                const l = w.querySelector('.widget-label');
                const s = w.querySelector('select');
                if (l && s && l.textContent.trim() === label)
                  return s.selectedIndex >= 0 ? s.options[s.selectedIndex].text.replace(/\u00a0/g, " ") : null;
              }
              return null;
            }""", label)

    def slider_readout(self, description: str) -> Any:
        """The readout (the value, editable) of the slider labelled ``description``."""
        return self.page.locator(".widget-slider", has_text=description).locator(
            ".widget-readout").first

    def slider_text(self, description: str) -> str | None:
        """The value the slider labelled ``description`` shows (None if not rendered).

        Reads ``textContent``: cells scrolled out of view may not be laid out."""
        return self.page.evaluate(
            """(label) => {
              for (const s of document.querySelectorAll('.widget-slider')) {
                const l = s.querySelector('.widget-label');
                if (l && l.textContent.trim() === label) {
                  const r = s.querySelector('.widget-readout');
                  return r ? r.textContent.trim() : null;
                }
              }
              return null;
            }""", description)

    def text_field(self, label: str) -> Any:
        """The input of the text field labelled ``label`` (e.g. a DictEditor key)."""
        return self.page.locator(".widget-text", has=self.page.locator(
            ".widget-label", has_text=label)).locator("input").first

    def field_text(self, label: str) -> str | None:
        """What the text field labelled ``label`` holds (None if not rendered)."""
        return self.page.evaluate(
            """(label) => {
              for (const w of document.querySelectorAll('.widget-text')) {
                const l = w.querySelector('.widget-label');
                if (l && l.textContent.trim() === label) {
                  const i = w.querySelector('input');
                  return i ? i.value : null;
                }
              }
              return null;
            }""", label)

    def inner_text(self, selector: str) -> str:
        """The text of the first element matching ``selector`` ("" if none)."""
        return self.page.evaluate(
            "(s) => { const e = document.querySelector(s); return e ? e.innerText : ''; }",
            selector)

    def cell_outputs_text(self) -> str:
        return self.page.evaluate(
            "() => Array.from(document.querySelectorAll('.jp-OutputArea-output'))"
            ".map(e => e.innerText).join('\\n')")

    def error_outputs(self) -> list[str]:
        """Tracebacks shown in cell outputs."""
        texts = self.page.locator(
            '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'
        ).all_inner_texts()
        return [t for t in texts if "Traceback" in t or "Error" in t]
