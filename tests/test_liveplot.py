"""Live plots of scans: real Redis, real demo scans, real figures (Agg), and one real kernel
with ipympl whose canvas frames are read from iopub while the kernel is idle and busy."""

from __future__ import annotations

import ast
import gc
import hashlib
import io
import queue
import subprocess
import sys
import time

import gevent
import numpy as np
import pytest
from peer import Peer
from peers.scan_helpers import new_session
from waiting import wait_for

from beacon_ipy import get_session_node
from beacon_ipy.demo import amesh, ascan, timescan
from beacon_ipy.jupyter.liveplot import (
    LivePlot,
    active_liveplots,
    liveplot,
    stop_liveplots,
)
from beacon_ipy.jupyter.registry import REGISTRY
from beacon_ipy.scans import StreamDescription as S
from beacon_ipy.scans import create_scan
from beacon_ipy.scans.bdgaps import data_url, ensure_initialised

DEMO = {"count_time": 0.001, "progress": False, "with_image": False}


def legend(ax) -> list[str]:
    leg = ax.get_legend()
    return [t.get_text() for t in leg.get_texts()] if leg is not None else []


def title(plot: LivePlot) -> str:
    return plot.figure._suptitle.get_text()


def stride_for(n: int, cap: int) -> int:
    """The decimation stride the buffers reach for n points in cap slots."""
    stride = 1
    while -(-n // stride) > cap:
        stride *= 2
    return stride


def test_ascan_curve_spectrum_and_waterfall_are_the_producers_data(plots):
    session = new_session()
    plot = plots(session, max_draw_points=5000)
    scan = ascan("sx", 0, 2, 12, session=session, **DEMO)
    nb = scan.scan_nb
    assert plot.wait_drawn(nb) == {"scan_nb": nb, "points": 12, "ended": True}
    nodes = get_session_node(session).get_scan(nb).nodes
    x, y = nodes["axis:sx"].get(), nodes["simu:diode"].get()
    spectra = nodes["mca1:spectrum"].get()
    with plot.view.lock:
        ax = plot.panel("curves")
        (line,) = ax.get_lines()
        np.testing.assert_array_equal(line.get_xdata(), x)
        np.testing.assert_array_equal(line.get_ydata(), y)
        assert legend(ax) == [f"diode #{nb}"]
        assert (ax.get_xlabel(), ax.get_ylabel()) == ("sx (mm)", "diode (counts)")
        lo, hi = ax.get_ylim()
        assert lo <= y.min() and hi >= y.max(), "autoscaled to the data"
        text = title(plot)
        assert f"{session} #{nb}: ascan sx 0 2 12 0.001" in text
        assert "[12/12 pts, SUCCESS]" in text
        # 1d channel: the latest spectrum against energy, and every spectrum per point
        spec = plot.panel("spectrum")
        (sline,) = spec.get_lines()
        np.testing.assert_array_equal(sline.get_ydata(), spectra[-1])
        np.testing.assert_allclose(sline.get_xdata(), np.arange(2048) * 0.01)
        assert spec.get_xlabel() == "energy (keV)"
        (image,) = plot.panel("waterfall").get_images()
        # 2048 bins shown as 512 columns (4 bins averaged), one row per point
        np.testing.assert_allclose(np.asarray(image.get_array()),
                                   spectra.reshape(12, 512, 4).mean(axis=-1), rtol=1e-6)
    png = plot.png()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000


def test_new_scans_add_numbered_lines_and_a_new_axis_starts_fresh(plots):
    session = new_session()
    plot = plots(session, counters=["diode", "simu:monitor"], history=1)
    runs = [ascan("sx", 0, 1, n, session=session, with_mca=False, **DEMO) for n in (6, 7)]
    a, b = (s.scan_nb for s in runs)
    plot.wait_drawn(b)
    with plot.view.lock:
        ax = plot.panel("curves")
        assert set(plot.view.axes) == {"curves"}, "no 1d channel: no spectrum panels"
        assert legend(ax) == [f"diode #{a}", f"monitor #{a}", f"diode #{b}", f"monitor #{b}"]
        lines = {line.get_label(): line for line in ax.get_lines()}
        assert len(lines[f"diode #{b}"].get_xdata()) == 7
        assert lines[f"diode #{a}"].get_alpha() < lines[f"diode #{b}"].get_alpha()
        assert lines[f"diode #{a}"].get_color() == lines[f"diode #{b}"].get_color()
    c = ascan("sx", 0, 1, 5, session=session, with_mca=False, **DEMO).scan_nb
    plot.wait_drawn(c)
    with plot.view.lock:
        assert legend(plot.panel("curves")) == [f"diode #{b}", f"monitor #{b}",
                                                f"diode #{c}", f"monitor #{c}"], "history=1"
    t = timescan(npoints=5, session=session, with_mca=False, **DEMO).scan_nb
    plot.wait_drawn(t)
    with plot.view.lock:
        ax = plot.panel("curves")
        assert legend(ax) == [f"diode #{t}", f"monitor #{t}"], "another x axis: a fresh plot"
        assert ax.get_xlabel() == "elapsed_time (s)"
        assert ax.get_ylabel() == "counts"
    plot.counters = "nosuch"
    wait_for(lambda: "nosuch" in plot.last_frame.note, what="a redraw after changing counters")
    with plot.view.lock:  # a choice the scan cannot follow: its default, and a note
        assert legend(plot.panel("curves")) == [f"diode #{t}"]
        note = plot.figure.texts[-1].get_text()
    assert note.startswith("no counter 'nosuch' in this scan (it has ")
    assert "diode" in note and "monitor" in note


def test_amesh_is_an_image_of_the_mesh_grid(plots):
    session = new_session()
    plot = plots(session)
    nb = amesh("sx", 0, 1, 5, "sy", 0, 2, 4, session=session, **DEMO).scan_nb
    plot.wait_drawn(nb)
    diode = get_session_node(session).get_scan(nb).nodes["simu:diode"].get()
    with plot.view.lock:
        ax = plot.panel("mesh")
        (image,) = ax.get_images()
        grid = np.asarray(image.get_array())
        assert grid.shape == (4, 5)  # (slow sy points, fast sx points)
        np.testing.assert_array_equal(grid, diode.reshape(4, 5))
        np.testing.assert_allclose(image.get_extent(), (-0.125, 1.125, -1 / 3, 2 + 1 / 3))
        assert (ax.get_xlabel(), ax.get_ylabel()) == ("sx (mm)", "sy (mm)")
        assert ax.get_title() == f"diode #{nb}"
        assert "spectrum" in plot.view.axes, "the MCA is shown next to the map"


def test_fast_spectrum_scan_redraws_at_most_10hz_with_bounded_buffers(plots):
    session = new_session()
    plot = plots(session, max_points=64, waterfall_rows=16)
    n = 300
    info = {"type": "timescan", "title": "fast", "npoints": n, "acquisition_chain": {
        "timer": {"master": {"scalars": ["timer:elapsed_time"]}}}}
    scan = create_scan(session, info, [S.scalar("timer:elapsed_time", unit="s"),
                                       S.scalar("det:counts"),
                                       S.spectrum("mca:spectrum", 2048)])
    with scan:
        for i in range(n):
            scan.push({"timer:elapsed_time": i * 0.01, "det:counts": float(i),
                       "mca:spectrum": np.full(2048, i, dtype=np.float32)})
            gevent.sleep(0.004)  # pacing the producer (~150 Hz), not synchronisation
    plot.wait_drawn(scan.scan_nb, timeout=20)
    starts = np.array(plot.draw_starts)
    assert len(starts) >= 3, "redrawn while the scan ran"
    assert np.diff(starts).min() >= 0.1 - 1e-3, "never more than 10 redraws per second"
    s0, s1 = stride_for(n, 64), stride_for(n, 16)
    kept = np.arange(0, n, s0)
    with plot.view.lock:
        (line,) = plot.panel("curves").get_lines()
        np.testing.assert_allclose(line.get_xdata(), kept * 0.01)
        np.testing.assert_array_equal(line.get_ydata(), kept)
        (image,) = plot.panel("waterfall").get_images()
        rows = np.asarray(image.get_array())
        np.testing.assert_array_equal(rows[:, 0], np.arange(0, n, s1))
        (sline,) = plot.panel("spectrum").get_lines()
        assert sline.get_ydata()[0] == n - 1, "the last spectrum landed"
    assert rows.shape[0] <= 16
    model = plot.models[scan.scan_nb]
    assert model.columns.stride == s0 and model.spectra["mca:spectrum"].stride == s1
    # Bounded: 3 channels x 64 slots x 8 bytes, 16 x 512 float32 rows, one spectrum.
    assert plot.draw_stats()["buffer_bytes"] <= 3 * 64 * 8 + 16 * 512 * 4 + 2048 * 4


def test_follows_another_process_running_scan_and_stops_without_leftovers(plots):
    session = new_session()
    peer = Peer("scan_producer.py", session, "10", "25")
    try:
        nb = peer.expect("pushed")["scan_nb"]
        plot = plots(session)  # include_last: the running scan is shown at once
        plot.wait_drawn(nb, ended=False, points=25)
        with plot.view.lock:
            ax = plot.panel("curves")
            (line,) = ax.get_lines()
            np.testing.assert_array_equal(line.get_xdata(), np.arange(25))
            np.testing.assert_array_equal(line.get_ydata(), np.arange(25.0))
            assert ax.get_xlabel() == "point", "no master axis declared"
            assert legend(ax) == [f"counter #{nb}"]
            spec = plot.panel("spectrum")
            assert spec.get_xlabel() == "channel"
            np.testing.assert_array_equal(spec.get_lines()[0].get_ydata(), np.full(16, 24.0))
            assert "[25 pts]" in title(plot)
        greenlets = plot.greenlets
        assert len(greenlets) >= 2
        start = time.monotonic()
        plot.stop()  # while the scan still runs
        assert time.monotonic() - start < 3.0
        assert plot.greenlets == [] and not plot.running
        assert all(g.dead for g in greenlets)
        leftovers = [g for g in gc.get_objects() if isinstance(g, gevent.Greenlet)
                     and not g.dead and str(getattr(g, "name", "")).startswith("liveplot")]
        assert leftovers == []
        peer.send(cmd="end")
        peer.expect("reply")
    finally:
        peer.send(cmd="exit")
        peer.proc.wait(10)


def test_image_backend_shows_every_frame_as_a_png_widget(plots):
    import ipywidgets
    from PIL import Image

    session = new_session()
    plot = plots(session, backend="image", include_last=False)
    assert isinstance(plot.widget, ipywidgets.Image)
    seen: list[str] = []
    plot.widget.observe(lambda change: seen.append(hashlib.sha1(bytes(change["new"])).hexdigest()),
                        "value")
    nb = ascan("sx", 0, 1, 30, session=session, with_mca=False,
               **{**DEMO, "count_time": 0.02}).scan_nb
    plot.wait_drawn(nb)
    png = bytes(plot.widget.value)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert Image.open(io.BytesIO(png)).size == (640, 440)
    assert len(set(seen)) >= 2, "the image changed while the scan ran"


def test_a_redis_restart_does_not_stop_the_plot(own_redis, plots):
    session = new_session()
    plot = plots(session, redis_url=own_redis.url)
    first = ascan("sx", 0, 1, 3, session=session, redis_url=own_redis.url, with_mca=False,
                  **DEMO).scan_nb
    plot.wait_drawn(first)
    own_redis.restart()  # all data gone; scan numbers start again
    ensure_initialised(data_url(own_redis.url))  # the empty server, ready for blissdata
    nb = ascan("sx", 0, 1, 4, session=session, redis_url=own_redis.url, with_mca=False,
               **DEMO).scan_nb
    shown = plot.wait_drawn(nb, points=4, timeout=20)
    assert shown["points"] == 4 and plot.running
    diode = get_session_node(session, own_redis.url).get_scan(nb).nodes["simu:diode"].get()
    with plot.view.lock:
        (line,) = [ln for ln in plot.panel("curves").get_lines() if ln.get_alpha() == 1.0]
        np.testing.assert_array_equal(line.get_ydata(), diode)


def test_buffers_take_blocks_twice_late_or_out_of_order_and_stay_bounded():
    # Two walks of one scan (the replay of the last scan and the session walk) may
    # deliver the same blocks, in any interleaving: every point must land once.
    from beacon_ipy.liveplot.data import PointColumns, SpectrumHistory

    cols = PointColumns(max_points=16)
    x = np.arange(100.0)
    for start, stop in ((5, 40), (0, 10), (40, 100), (30, 60)):
        cols.put("x", start, x[start:stop])
    idx, data = cols.series(["x"])
    assert cols.stride == stride_for(100, 16) and len(idx) <= 16
    np.testing.assert_array_equal(data["x"], idx)
    spectra = SpectrumHistory(2048, max_rows=8)
    rows = np.arange(100, dtype=np.float32)[:, None] * np.ones(2048, dtype=np.float32)
    for start, stop in ((10, 100), (0, 10), (50, 60)):
        spectra.put(start, rows[start:stop])
    waterfall, stride = spectra.waterfall()
    assert waterfall.shape == (7, 512) and stride == 16
    np.testing.assert_array_equal(waterfall[:, 0], np.arange(0, 100, 16))
    assert spectra.latest_index == 99 and spectra.latest[0] == 99


def test_bad_input_says_what_is_wrong():
    session = new_session()
    with pytest.raises(ValueError, match="invalid session name"):
        LivePlot("no spaces", backend="agg")
    with pytest.raises(TypeError, match="y must be a name"):
        LivePlot(session, counters=3, backend="agg", start=False)
    with pytest.raises(ValueError, match="y: no name given"):
        LivePlot(session, counters=" , ", backend="agg", start=False)
    with pytest.raises(ValueError, match=r"max_rate must be in \(0, 10\]"):
        LivePlot(session, max_rate=50, backend="agg", start=False)
    with pytest.raises(ValueError, match="history must be >= 0"):
        LivePlot(session, history=-1, backend="agg", start=False)
    with pytest.raises(ValueError, match="backend 'qt' is not one of"):
        LivePlot(session, backend="qt", start=False)


def test_liveplot_function_replaces_the_sessions_plot_and_stops_it():
    session = new_session()
    first = liveplot(session, backend="agg")
    second = liveplot(session, "diode", backend="agg")
    try:
        assert not first.running and second.running
        assert active_liveplots()[session] is second
        assert second in REGISTRY.closables and first not in REGISTRY.closables
        assert second.counters == ["diode"]
    finally:
        assert stop_liveplots(session) == [session]
    assert not second.running and second not in REGISTRY.closables
    assert session not in active_liveplots()


# -- a real kernel with ipympl ---------------------------------------------------------------


@pytest.fixture(scope="module")
def kernel(kernels_dir, redis_url):
    from jupyter_helpers import started_kernel

    with started_kernel(kernels_dir) as k:
        yield k


class CanvasFrames:
    """Reads iopub directly (nbclient would drop idle-time messages, NOTES §3) and keeps
    the image frames sent on one ipympl canvas comm; everything else is handed back to
    the kernel helper's stash so that its ``collect`` still works."""

    def __init__(self, kernel, comm_id: str):
        self.kernel, self.comm_id = kernel, comm_id
        self.frames: list[tuple[float, str, str | None]] = []  # (time, sha1, parent id)
        self.idle: set[str] = set()  # requests whose "idle" status has been seen

    def pump(self, timeout: float) -> None:
        try:
            msg = self.kernel.client.get_iopub_msg(timeout=max(timeout, 0.01))
        except queue.Empty:
            return
        parent = msg["parent_header"].get("msg_id")
        content = msg["content"]
        if (msg["msg_type"] == "comm_msg" and content["comm_id"] == self.comm_id
                and msg.get("buffers")):
            self.frames.append((time.monotonic(), hashlib.sha1(bytes(msg["buffers"][0]))
                                .hexdigest(), parent))
            return
        if msg["msg_type"] == "status" and content["execution_state"] == "idle":
            self.idle.add(parent)
        if parent:
            self.kernel._stash.setdefault(("iopub", parent), []).append(msg)

    def distinct(self, frames=None) -> int:
        return len({f[1] for f in (self.frames if frames is None else frames)})

    def wait(self, condition, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {what}; "
                                     f"{len(self.frames)} frames seen")
            self.pump(min(left, 0.5))


def test_ipympl_canvas_updates_arrive_while_the_kernel_idles_and_while_a_cell_waits(kernel):
    session = new_session()
    res = kernel.run("%matplotlib widget\nfrom beacon_ipy.jupyter.liveplot import LivePlot\n"
                     f"p = LivePlot({session!r}, include_last=False)\ndisplay(p)\n"
                     "(p.backend, p.widget.model_id, p.app.model_id, "
                     "p.app.children[-1] is p.widget)")
    backend, canvas_id, app_id, canvas_in_app = ast.literal_eval(res.result)
    assert backend == "ipympl" and canvas_in_app
    views = [m["content"]["data"].get("application/vnd.jupyter.widget-view+json", {})
             for m in res.messages if m["msg_type"] == "display_data"]
    # the controls above the canvas
    assert {"version_major": 2, "version_minor": 0, "model_id": app_id} in views
    # The kernel is idle now; a demo scan runs in another process.
    demo = subprocess.Popen([sys.executable, "-m", "beacon_ipy.cli", "demo", "--session",
                             session, "--scans", "1", "--npoints", "150", "--count-time",
                             "0.03", "--no-image", "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        frames = CanvasFrames(kernel, canvas_id)
        frames.wait(lambda: frames.distinct() >= 3, 30, "3 distinct frames while idle")
        idle_frames = list(frames.frames)
        assert demo.poll() is None, "the scan was still running"
        # A cell that waits in gevent: the plot keeps refreshing during it.
        msg_id = kernel.submit("import time\ntime.sleep(2.0)\np.shown['points']")
        frames.wait(lambda: msg_id in frames.idle, 30, "the waiting cell to finish")
        busy = [f for f in frames.frames[len(idle_frames):] if f[2] == msg_id]
        result = kernel.collect(msg_id).check()
        assert frames.distinct(busy) >= 2, f"frames during the busy cell: {busy}"
        assert 0 < int(result.result) < 150
        out, err = demo.communicate(timeout=60)
        assert demo.returncode == 0, err
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    shown = kernel.eval("p.wait_drawn(timeout=20)")
    assert shown["points"] == 150 and shown["ended"]
    assert all(f[2] != msg_id for f in idle_frames)
    assert kernel.eval("p.stop(); p.greenlets") == []
