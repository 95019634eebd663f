"""live_scans.ipynb in a real browser: JupyterLab (started by ``beacon-ipy lab``) + Chromium.

The notebook (small parameters injected, files in a temporary folder) is opened in
headless Chromium, run with "Run All" as a newcomer would, and the test checks what a
person would see:

- the notebook runs on the ``beacon`` kernel, every cell succeeds, the file is saved and
  plotted back;
- the live plot's canvas shows data (pixels of the counter's line colour) and changes
  over time: several distinct frames while the scans run (the kernel busy in a cell);
- the count-time slider follows a value set by another process, and a value typed in
  the slider reaches another process;
- no JavaScript error was logged (console errors and uncaught page errors).

Screenshots go to the artefacts folder (``test-artifacts/``); with
``BEACON_IPY_UPDATE_SCREENSHOT=1`` the README's image ``docs/images/live_scans.png`` is
rewritten too. Skipped, loudly, only when Debian's chromium is missing (``.ci/run``
installs it through ``.ci/system-extras``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from browser_helpers import CHROMIUM, LabPage, LabServer, chromium, have_chromium
from notebook_helpers import prepare

ROOT = Path(__file__).resolve().parent.parent
README_IMAGE = ROOT / "docs" / "images" / "live_scans.png"
SLIDER = "count time (s)"
# The plot made from the file: an image or canvas in the outputs of the cell that printed
# "... points of simu:diode against axis:sx" (inline PNG or ipympl, depending on the backend).
FILE_PLOT = """() => {
  for (const area of document.querySelectorAll('.jp-OutputArea')) {
    if (area.textContent.includes('points of simu:diode against axis:sx'))
      return !!area.querySelector('img, canvas');
  }
  return false;
}"""

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]


def set_channel(name: str, value: float) -> subprocess.Popen:
    """Another process sets channel ``name`` (started, not waited for)."""
    code = ("import sys; from beacon_ipy.channels import Channel, close_all; "
            f"Channel({name!r}).value = {value!r}; close_all()")
    return subprocess.Popen([sys.executable, "-c", code])


def shows(text: str | None, value: float) -> bool:
    """Does a slider readout (d3 format, e.g. "0.2000") show ``value``?"""
    try:
        return text is not None and abs(float(text) - value) < 1e-9
    except ValueError:
        return False


def read_channel(name: str) -> object:
    """The value of channel ``name`` as a brand-new process sees it."""
    code = ("from beacon_ipy.channels import Channel, close_all; "
            f"print(repr(Channel({name!r}, timeout=5).value)); close_all()")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    return eval(done.stdout.strip())  # noqa: S307 - a repr of a float we set


def test_live_scans_in_a_real_browser(tmp_path, artifacts_dir):
    if not have_chromium():
        pytest.skip(f"BROWSER TEST SKIPPED: Debian chromium not found at {CHROMIUM}; install it "
                    f"with .ci/system-extras (apt-get install chromium)")
    update_image = bool(os.environ.get("BEACON_IPY_UPDATE_SCREENSHOT"))
    # the README's image shows the notebook's own session name; tests use a unique one
    session = "demo" if update_image else f"browser-{os.getpid()}"
    scans, npoints = 2, 30
    channel = f"{session}:count_time"
    workdir, data_dir = tmp_path / "notebooks", tmp_path / "data"
    nb = prepare("live_scans", workdir, SESSION=session, SCANS=scans, NPOINTS=npoints,
                 COUNT_TIME=0.1, DATA_DIR=str(data_dir))
    nbformat.write(nb, workdir / "live_scans.ipynb")  # `beacon-ipy lab` keeps this copy

    t0 = time.monotonic()
    timeline: list[str] = []

    def note(what: str) -> None:
        timeline.append(f"{time.monotonic() - t0:6.1f} s  {what}")

    server = LabServer(workdir, tmp_path / "home", artifacts_dir / "browser-jupyterlab.log",
                       "live_scans.ipynb")
    with server, chromium() as page:
        lab = LabPage(page)
        note("server up")
        try:
            lab.open(server.url("lab/tree/live_scans.ipynb"))
            kernel = lab.wait_kernel_idle(timeout=90)
            note(f"kernel {kernel}")
            assert kernel["name"] == "beacon", kernel
            lab.command("notebook:run-all-cells")

            # While the scans run (kernel busy): sample the canvas; once it shows data,
            # another process changes the count time and the slider must follow.
            frames: dict[int, dict] = {}
            setter = None
            followed = False
            deadline = time.monotonic() + 90
            while lab.cell_outputs_text().count("-> SUCCESS") < scans:
                assert time.monotonic() < deadline, (
                    f"scans not finished after 90 s; frames={len(frames)}\n" + "\n".join(timeline))
                state = lab.canvas()
                if state and state["line"] > 30 and state["hash"] not in frames:
                    frames[state["hash"]] = state
                    note(f"frame {len(frames)}: {state}")
                    if len(frames) == 4:
                        page.locator(".jupyter-matplotlib").first.screenshot(
                            path=str(artifacts_dir / "browser-live_scans-running.png"))
                if setter is None and len(frames) >= 2:
                    setter = set_channel(channel, 0.2)
                    note("another process sets the count time to 0.2")
                if setter is not None and not followed:
                    followed = shows(lab.slider_text(SLIDER), 0.2)
                    if followed:
                        note("the slider shows 0.2")
                time.sleep(0.15)  # sampling period of the canvas probe
            note("scans finished")
            assert len(frames) >= 3, (f"the live plot showed {len(frames)} distinct frames "
                                      f"with data while the scans ran (kernel busy)\n"
                                      + "\n".join(timeline))
            assert setter is not None and setter.wait(30) == 0
            lines = [f["line"] for f in frames.values()]
            assert max(lines) > 3 * min(lines), f"the counter's line did not grow: {lines}"
            deadline = time.monotonic() + 10
            while not followed:
                assert time.monotonic() < deadline, (
                    f"the slider shows {lab.slider_text(SLIDER)!r}, not the 0.2 set by another "
                    f"process\n" + "\n".join(timeline))
                followed = shows(lab.slider_text(SLIDER), 0.2)
                time.sleep(0.1)

            # The end of the notebook: saved, reopened, plotted from the file
            page.get_by_text("points of simu:diode against axis:sx").wait_for(timeout=60_000)
            lab.wait_kernel_idle(timeout=60)
            note("all cells done")
            page.screenshot(path=str(artifacts_dir / "browser-live_scans.png"), full_page=True)
            # the live plot's cell (code and plot), as the README shows it
            cell = page.locator(".jp-CodeCell", has=page.locator(".jupyter-matplotlib")).first
            cell.scroll_into_view_if_needed()
            cell.screenshot(path=str(artifacts_dir / "browser-live_scans-plot.png"))
            if update_image:
                README_IMAGE.parent.mkdir(parents=True, exist_ok=True)
                cell.screenshot(path=str(README_IMAGE))
            assert not lab.error_outputs(), lab.error_outputs()
            outputs = lab.cell_outputs_text()
            for number in range(1, scans + 1):  # a new session: scans 1, 2...
                assert f"scan {number}: ascan sx 0.0 1.0 {npoints}" in outputs, outputs
            assert page.evaluate(FILE_PLOT), "no plot under the cell that reads the file"
            saved = sorted(p.name for p in (data_dir / session).glob("scan*.h5"))
            assert len(saved) == scans, saved

            # Typing a value in the slider (the browser) sets the channel everywhere
            box = lab.slider_readout(SLIDER)
            box.scroll_into_view_if_needed()
            box.click()
            page.keyboard.press("Control+A")
            page.keyboard.type("0.15")
            page.keyboard.press("Enter")
            seen = None
            deadline = time.monotonic() + 20
            while seen != 0.15 and time.monotonic() < deadline:
                seen = read_channel(channel)
            note(f"another process reads {seen}")
            assert seen == 0.15, f"the slider's 0.15 did not reach another process: {seen}"

            assert not lab.js_errors, f"JavaScript errors: {lab.js_errors}"
        except BaseException:
            page.screenshot(path=str(artifacts_dir / "browser-live_scans-failure.png"),
                            full_page=True)
            (artifacts_dir / "browser-console.log").write_text(
                "\n".join(f"{k}: {t}" for k, t in lab.console) + "\n" + "\n".join(timeline))
            raise
        finally:
            print("\n".join(timeline))
