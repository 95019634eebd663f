"""live_scans.ipynb in a real browser: JupyterLab (started by ``beacon-ipy lab``) + Chromium.

The notebook (small parameters injected, files in a temporary folder) is opened in
headless Chromium, run with "Run All" as a newcomer would, and the test checks what a
person would see:

- the notebook runs on the ``beacon`` kernel, every cell succeeds, the file is saved and
  plotted back;
- the live plot's canvas shows data (pixels of the counter's line colour) and changes
  over time: several distinct frames while the scans run (the kernel busy in a cell);
- the count-time slider follows a value set by another process, and a value typed in
  the slider reaches another process; then the sequence of issue 12 (outside set, one
  key press, quick key presses, outside sets again): the slider follows each outside set
  within a second (JupyterLab sends widget messages to a kernel subshell);
- no JavaScript error was logged (console errors and uncaught page errors).

A second notebook shows ``liveplot(SESSION)`` while ANOTHER process publishes demo
scans (blissdata): the canvas updates during an ascan, x/y chosen in the plot's controls
change the plot (canvas and kernel side), an amesh fills its map, the detector frame
appears (``test_live_plot_of_another_process_scans_in_a_real_browser``). A third test
covers the cache editor and the event log.

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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest
from browser_helpers import CHROMIUM, LabPage, LabServer, chromium, have_chromium
from notebook_helpers import prepare
from peer import Peer

from beacon_ipy.jupyter.liveplot.controls import DEFAULT as DEFAULT_X

ROOT = Path(__file__).resolve().parent.parent
README_IMAGE = ROOT / "docs" / "images" / "live_scans.png"
SLIDER = "count time (s)"
# The plot made from the file: an image or canvas in the outputs of the cell that printed
# "... points of simu/diode against sx/value" (inline PNG or ipympl, depending on the backend).
FILE_PLOT = """() => {
  for (const area of document.querySelectorAll('.jp-OutputArea')) {
    if (area.textContent.includes('points of simu/diode against sx/value'))
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


def need_chromium() -> None:
    if not have_chromium():
        pytest.skip(f"BROWSER TEST SKIPPED: Debian chromium not found at {CHROMIUM}; install it "
                    f"with .ci/system-extras (apt-get install chromium)")


def within(seconds: float, check, what: str, since: float | None = None) -> float:
    """Poll ``check()`` until true, at most ``seconds`` after ``since`` (default: now);
    returns how long it took. The failure says what was expected."""
    start = time.monotonic() if since is None else since
    while True:
        result = check()
        if result:
            return time.monotonic() - start
        if time.monotonic() - start > seconds:
            raise AssertionError(f"{what}: not within {seconds} s (last check: {result!r})")
        time.sleep(0.02)  # polling the page, with a deadline


def peer_value(peer: Peer, name: str) -> object:
    return peer.request(cmd="get", name=name)["value"]


def test_live_scans_in_a_real_browser(tmp_path, artifacts_dir):
    need_chromium()
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
        lab = LabPage(page, server)
        note("server up")
        try:
            # the URL `beacon-ipy lab` prints opens the notebook, not the Launcher
            within(30.0, lambda: "/lab/tree/live_scans.ipynb?token=" in server.log(),
                   "JupyterLab prints the notebook's URL")
            lab.open(server.url("lab/tree/live_scans.ipynb"))
            kernel = lab.wait_kernel_idle(timeout=90)
            note(f"kernel {kernel}")
            assert kernel["name"] == "beacon", kernel
            lab.run_all()

            # While the scans run (kernel busy): sample the canvas; once it shows data,
            # another process changes the count time and the slider must follow.
            frames: dict[int, dict] = {}
            setter = None
            followed = False
            deadline = time.monotonic() + 90
            while lab.cell_outputs_text().count("-> SUCCESS") < scans:
                assert time.monotonic() < deadline, (
                    f"scans not finished after 90 s; frames={len(frames)}; {lab.diagnosis()}\n"
                    + "\n".join(timeline))
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
            page.get_by_text("points of simu/diode against sx/value").wait_for(timeout=60_000)
            lab.wait_cells_done(timeout=60)
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

            # Issue 12 §1: outside set -> one key press -> quick key presses -> outside
            # sets again. JupyterLab sends these widget messages to a kernel subshell (its
            # own thread); the slider must go on following other processes.
            with Peer("channel_peer.py") as peer:
                peer.expect("ready")

                def outside_set(value: float) -> None:
                    start = time.monotonic()
                    peer.request(cmd="set", name=channel, value=value)
                    took = within(1.0, lambda: shows(lab.slider_text(SLIDER), value),
                                  f"the slider shows {value} set by another process",
                                  since=start)
                    note(f"another process sets {value}: the slider shows it in {took:.2f} s")

                outside_set(0.3)
                handle = lab.page.locator(".widget-slider", has_text=SLIDER).locator(
                    ".noUi-handle").first
                handle.focus()
                page.keyboard.press("ArrowRight")  # one key press: +0.01
                within(5.0, lambda: peer_value(peer, channel) == 0.31,
                       "one key press reaches another process")
                for _ in range(5):  # quick key presses
                    page.keyboard.press("ArrowRight")
                within(5.0, lambda: peer_value(peer, channel) == 0.36,
                       "quick key presses reach another process")
                note("key presses reached another process")
                for value in (0.2, 0.45, 0.05):
                    outside_set(value)

            assert not lab.js_errors, f"JavaScript errors: {lab.js_errors}"
        except BaseException:
            lab.record_failure(artifacts_dir, "live_scans", timeline)
            raise
        finally:
            print("\n".join(timeline))


CACHE_NOTEBOOK = """\
%load_ext beacon_ipy
import time

from beacon_ipy.channels import Cache
from beacon_ipy.widgets import cache_editor, event_log


class Detector:
    name = {device!r}


mca = Detector()
params = Cache(mca, "params", default_value={{"gain": 1, "mode": "fast"}})
params.value = {{"gain": 1, "mode": "fast"}}
display(cache_editor(mca))
time.sleep(1)  # still running when JupyterLab's widget manager creates its subshell
"""


def test_cache_editor_and_event_log_in_a_real_browser(tmp_path, artifacts_dir):
    """The cache editor (a dict value: edit, add and remove keys) and the event log keep
    following other processes after input in the browser, as the slider does."""
    need_chromium()
    device, events = f"mca-{os.getpid()}", f"browser-events-{os.getpid()}"
    name = f"{device}:params"
    workdir = tmp_path / "notebooks"
    workdir.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(CACHE_NOTEBOOK.format(device=device)),
                nbformat.v4.new_code_cell(f"event_log({events!r})")]
    nb.metadata["kernelspec"] = {"name": "beacon", "display_name": "beacon",
                                 "language": "python"}
    nbformat.write(nb, workdir / "cache.ipynb")
    timeline: list[str] = []
    server = LabServer(workdir, tmp_path / "home", artifacts_dir / "browser-cache-lab.log",
                       "cache.ipynb")
    with server, chromium() as page, Peer("channel_peer.py") as peer:
        peer.expect("ready")
        lab = LabPage(page, server)
        try:
            lab.open(server.url("lab/tree/cache.ipynb"))
            assert lab.wait_kernel_idle(timeout=90)["name"] == "beacon"
            lab.run_all()
            page.locator(".beacon-event-log").first.wait_for(state="attached", timeout=60_000)
            lab.wait_cells_done(timeout=60)
            assert not lab.error_outputs(), lab.error_outputs()
            # JupyterLab shows the kernel busy while the first cell runs, although its
            # widget manager creates a subshell meanwhile (a control request with its
            # own busy/idle: `beacon-ipy lab` lists it in untracked_message_types)
            first = lab.during_cells()[0]
            assert "create_subshell_request" in first["control"], first
            assert set(first["statuses"]) <= {"busy"}, (
                f"JupyterLab showed the kernel {first['statuses']} while a cell ran")

            def outside_set(value: dict) -> None:
                start = time.monotonic()
                peer.request(cmd="set", name=name, value=value)
                for key, item in value.items():
                    text = item if isinstance(item, str) else repr(item)
                    took = within(1.0, lambda k=key, s=text: lab.field_text(k) == s,
                                  f"field {key!r} shows {text!r} set by another process",
                                  since=start)
                timeline.append(f"outside set {value}: shown in {took:.2f} s")

            def type_in(label: str, text: str) -> None:
                field = lab.text_field(label)
                field.fill(text)
                field.press("Enter")

            outside_set({"gain": 2, "mode": "fast"})
            type_in("gain", "3")  # one edit
            within(5.0, lambda: peer_value(peer, name) == {"gain": 3, "mode": "fast"},
                   "an edit reaches another process")
            for value in ("4", "5", "6"):  # quick edits
                type_in("gain", value)
            within(5.0, lambda: peer_value(peer, name) == {"gain": 6, "mode": "fast"},
                   "quick edits reach another process")
            outside_set({"gain": 7, "mode": "slow"})
            outside_set({"gain": 8, "mode": "slow"})
            # keys added and removed in the browser, for every process
            page.locator(".beacon-dict-new-key input").fill("offset")
            page.locator(".beacon-dict-new-value input").fill("0.5")
            page.locator(".beacon-dict-add").click()
            within(5.0, lambda: peer_value(peer, name) == {"gain": 8, "mode": "slow",
                                                           "offset": 0.5},
                   "a key added in the browser reaches another process")
            within(5.0, lambda: lab.field_text("offset") == "0.5", "the added key shown")
            page.get_by_title("remove 'mode' from the dict").click()
            within(5.0, lambda: peer_value(peer, name) == {"gain": 8, "offset": 0.5},
                   "a key removed in the browser is gone for another process")
            outside_set({"gain": 9, "offset": 0.5, "roi": [1, 9]})
            # reset to defaults (clear_cache) from the browser, then outside sets again
            page.locator(".beacon-cache-reset").click()
            within(5.0, lambda: peer_value(peer, name) == {"gain": 1, "mode": "fast"},
                   "reset to defaults reaches another process")
            outside_set({"gain": 10, "mode": "fast"})

            # the event log: events from another process, "clear" in the browser, more
            peer.request(cmd="event_channel", name=events)
            start = time.monotonic()
            peer.request(cmd="post", name=events, values=["first"])
            within(1.0, lambda: "'first'" in lab.inner_text(".beacon-event-log"),
                   "the event log shows an event of another process", since=start)
            page.locator(".beacon-event-log-clear").click()
            within(5.0, lambda: "'first'" not in lab.inner_text(".beacon-event-log"),
                   "clear empties the log")
            for event in ("second", "third"):
                start = time.monotonic()
                peer.request(cmd="post", name=events, values=[event])
                within(1.0, lambda e=event: f"'{e}'" in lab.inner_text(".beacon-event-log"),
                       f"the log shows {event!r} after a clear", since=start)
            assert not lab.js_errors, f"JavaScript errors: {lab.js_errors}"
        except BaseException:
            lab.record_failure(artifacts_dir, "cache", timeline)
            raise
        finally:
            print("\n".join(timeline))


#: Another process publishing demo scans (blissdata) on command: ``ascan N T``, ``amesh N T``
#: (N x N points), one ``done NB REASON`` line after each scan.
PRODUCER = r"""
import sys
from beacon_ipy.demo import amesh, ascan

session, data_dir = sys.argv[1], sys.argv[2]
print("ready", flush=True)
for line in sys.stdin:
    cmd, n, t = line.split()
    if cmd == "ascan":
        scan = ascan("sx", 0.0, 1.0, int(n), float(t), session=session, data_dir=data_dir)
    else:
        scan = amesh("sx", 0.0, 1.0, int(n), "sy", 0.0, 1.0, int(n), float(t),
                     session=session, data_dir=data_dir)
    print(f"done {scan.scan_nb} {scan.end_reason}", flush=True)
"""

LIVEPLOT_NOTEBOOK = """\
%load_ext beacon_ipy
from beacon_ipy.jupyter.liveplot import liveplot

plot = liveplot({session!r}, include_last=False, history=0)
plot
"""

#: What the kernel's live plot shows, one JSON line (read through the notebook's kernel).
SHOWN = """\
import json as _j, numpy as _np
_f = plot.last_frame
_m, _d = _f.mesh, _f.detector
print(_j.dumps({"shown": plot.shown, "x": _f.plan.x if _f.plan else None,
                "y": list(_f.plan.curves) if _f.plan else [],
                "choice": plot.choice.as_dict(),
                "curves": {c.channel: len(c.y) for c in _f.curves if c.current},
                "mesh_filled": int(_np.isfinite(_m.data).sum()) if _m is not None else None,
                "mesh_cells": int(_m.data.size) if _m is not None else None,
                "detector": None if _d is None or _d.data is None else
                    {"index": _d.index, "frames": _d.frames, "shape": list(_d.data.shape),
                     "max": float(_d.data.max())}}))
"""


def test_live_plot_of_another_process_scans_in_a_real_browser(tmp_path, artifacts_dir,
                                                               monkeypatch):
    """Issue 11 §3: a live plot of blissdata scans published by another process, in
    JupyterLab: it updates while an ascan runs, x/y chosen in its widget controls change
    the plot (canvas and Python side, remembered for the session), an amesh fills its map
    as points arrive, and the 2D detector's frame appears."""
    import json

    need_chromium()
    session = f"browser-lp-{os.getpid()}"
    monkeypatch.setenv("BEACON_IPY_CONFIG_DIR", str(tmp_path / "config"))  # kernel's choices
    workdir, data_dir = tmp_path / "notebooks", tmp_path / "data"
    workdir.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(LIVEPLOT_NOTEBOOK.format(session=session))]
    nb.metadata["kernelspec"] = {"name": "beacon", "display_name": "beacon",
                                 "language": "python"}
    nbformat.write(nb, workdir / "liveplot.ipynb")
    t0 = time.monotonic()
    timeline: list[str] = []

    def note(what: str) -> None:
        timeline.append(f"{time.monotonic() - t0:6.1f} s  {what}")

    pool = ThreadPoolExecutor(1)  # reads the producer's lines while the test polls
    producer = subprocess.Popen([sys.executable, "-c", PRODUCER, session, str(data_dir)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    server = LabServer(workdir, tmp_path / "home", artifacts_dir / "browser-liveplot-lab.log",
                       "liveplot.ipynb")
    with server, chromium() as page:
        lab = LabPage(page, server)

        def shown() -> dict:
            return json.loads(lab.kernel_run(SHOWN).strip().splitlines()[-1])

        def run_scan(command: str, until=None) -> tuple[dict[int, dict], list[dict]]:
            """Another process runs a scan; sample the canvas (distinct frames) and what
            the kernel shows while it runs, until it is done and drawn ended."""
            producer.stdin.write(command + "\n")
            producer.stdin.flush()
            frames: dict[int, dict] = {}
            states: list[dict] = []
            reader = pool.submit(producer.stdout.readline)  # "done NB REASON"
            deadline = time.monotonic() + 60
            while not reader.done():
                assert time.monotonic() < deadline, f"{command}: not done in 60 s"
                state = lab.canvas()
                if state and state["hash"] not in frames:
                    frames[state["hash"]] = state
                states.append(shown())
                time.sleep(0.2)  # sampling period of the probes
            number, reason = reader.result().split()[1:]
            assert reason == "SUCCESS", reader.result()
            within(10.0, lambda: drawn_ended(shown()["shown"], int(number)),
                   f"the kernel's plot draws scan {number} ended")
            final = shown()
            states.append(final)
            note(f"{command}: scan {number}, {len(frames)} distinct frames; {final}")
            return frames, states

        try:
            assert producer.stdout.readline().strip() == "ready"
            lab.open(server.url("lab/tree/liveplot.ipynb"))
            assert lab.wait_kernel_idle(timeout=90)["name"] == "beacon"
            lab.run_all()
            page.locator(".jupyter-matplotlib-canvas-div canvas").first.wait_for(timeout=60_000)
            lab.wait_cells_done(timeout=60)
            assert not lab.error_outputs(), lab.error_outputs()
            note("plot shown")

            # 1. an ascan of another process: the canvas updates while it runs
            frames, states = run_scan("ascan 30 0.08")
            with_line = [f for f in frames.values() if f["line"] > 30]
            assert len(with_line) >= 3, (f"{len(with_line)} distinct frames with the "
                                         f"counter's line while the scan ran")
            # the line grows (by half at least: with both cores loaded the first frame
            # sampled with data was once already at half the scan, 304 -> 578 pixels)
            lines = [f["line"] for f in with_line]
            assert max(lines) > 1.5 * min(lines), f"the counter's line did not grow: {lines}"
            final = states[-1]
            assert final["x"] == "axis:sx" and final["y"] == ["simu:diode"], final
            assert final["curves"] == {"simu:diode": 30}, final
            # the controls show the defaults (not blank dropdowns)
            assert [lab.selected_text(label) for label in ("x", "monitor", "scan")] == [
                DEFAULT_X, "none", "newest"]
            page.locator(".jupyter-matplotlib").first.screenshot(
                path=str(artifacts_dir / "browser-liveplot-ascan.png"))
            before = lab.canvas()

            # 2. x and y chosen in the plot's controls (the browser) change the plot
            lab.select_option("widget-select-multiple", "y", "monitor", "diode")
            within(10.0, lambda: shown()["y"] == ["simu:diode", "simu:monitor"],
                   "y chosen in the browser reaches the kernel's plot")
            lab.select_option("widget-dropdown", "x", "elapsed_time")
            within(10.0, lambda: shown()["x"] == "timer:elapsed_time",
                   "x chosen in the browser reaches the kernel's plot")
            chosen = shown()
            assert chosen["choice"]["x"] == "timer:elapsed_time", chosen
            assert set(chosen["choice"]["y"]) == {"simu:diode", "simu:monitor"}, chosen
            assert chosen["curves"] == {"simu:diode": 30, "simu:monitor": 30}, chosen
            within(10.0, lambda: (c := lab.canvas())["hash"] != before["hash"]
                   and c["painted"] > 0, "the canvas changes after the selection")
            remembered = json.loads((tmp_path / "config" / "liveplot.json").read_text())
            assert remembered[session]["x"] == "timer:elapsed_time", remembered
            page.locator(".jupyter-matplotlib").first.screenshot(
                path=str(artifacts_dir / "browser-liveplot-selected.png"))
            note("x/y selected in the browser")
            page.get_by_role("button", name="default y").click()  # back to the defaults
            lab.select_option("widget-dropdown", "x", DEFAULT_X)
            within(10.0, lambda: (s := shown())["choice"]["y"] is None
                   and s["choice"]["x"] is None, "the defaults chosen back in the browser")
            within(5.0, lambda: lab.selected_text("x") == DEFAULT_X,
                   "the x dropdown shows the default again (not blank)")

            # 3. an amesh: its map fills as points arrive; the detector frame appears
            frames, states = run_scan("amesh 7 0.08")
            filled = [s["mesh_filled"] for s in states if s["mesh_filled"] is not None]
            assert filled and filled[-1] == 49 and states[-1]["mesh_cells"] == 49, filled
            partial = sorted({f for f in filled if 0 < f < 49})
            assert len(partial) >= 3, f"the map did not fill progressively: {filled}"
            colours = [f["colour"] for f in frames.values()]
            assert len(frames) >= 3 and max(colours) > min(colours), (
                f"the canvas's map did not fill: colour pixels per frame {colours}")
            detector = states[-1]["detector"]
            assert detector is not None, states[-1]
            assert detector["index"] == detector["frames"] - 1 == 48, detector
            assert detector["shape"] == [64, 80] and detector["max"] > 0, detector
            assert lab.canvas()["colour"] > 2000, "mesh map and detector frame painted"
            page.locator(".jupyter-matplotlib").first.screenshot(
                path=str(artifacts_dir / "browser-liveplot-amesh.png"))
            page.screenshot(path=str(artifacts_dir / "browser-liveplot.png"), full_page=True)
            assert not lab.js_errors, f"JavaScript errors: {lab.js_errors}"
        except BaseException:
            lab.record_failure(artifacts_dir, "liveplot", timeline)
            raise
        finally:
            print("\n".join(timeline))
            producer.stdin.close()
            producer.wait(30)
            pool.shutdown()


def drawn_ended(shown: dict, number: int) -> bool:
    return shown["scan_nb"] == number and shown["ended"]
