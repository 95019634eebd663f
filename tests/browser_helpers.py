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
"""

from __future__ import annotations

import json
import os
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

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
ANNOUNCEMENTS = "@jupyterlab/apputils-extension:announcements"


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

    def env(self) -> dict[str, str]:
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

# Pixels of the first ipympl canvas: size, painted pixels, pixels of matplotlib's first
# line colour (C0, #1f77b4: the current scan's counter), and a hash of the image.
_CANVAS = """() => {
  const c = document.querySelector('.jupyter-matplotlib-canvas-div canvas');
  if (!c || !c.width || !c.height) return null;
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let painted = 0, line = 0, hash = 0;
  for (let i = 0; i < d.length; i += 4) {
    const r = d[i], g = d[i + 1], b = d[i + 2], a = d[i + 3];
    if (a > 0 && (r < 245 || g < 245 || b < 245)) painted++;
    if (a > 200 && Math.abs(r - 31) < 25 && Math.abs(g - 119) < 25 && Math.abs(b - 180) < 25) line++;
    hash = (Math.imul(hash, 31) + r * 7 + g * 3 + b + a) >>> 0;
  }
  return {width: c.width, height: c.height, painted, line, hash};
}"""


class LabPage:
    """A JupyterLab page with error collection and probes."""

    def __init__(self, page: Any):
        self.page = page
        self.console: list[tuple[str, str]] = []
        self.page_errors: list[str] = []
        page.on("console", lambda m: self.console.append((m.type, m.text)))
        page.on("pageerror", lambda e: self.page_errors.append(str(e)))

    @property
    def js_errors(self) -> list[str]:
        return [text for kind, text in self.console if kind == "error"] + self.page_errors

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

    def canvas(self) -> dict | None:
        return self.page.evaluate(_CANVAS)

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
