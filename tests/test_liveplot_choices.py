"""The live plot on BLISS-shaped scans: plot hints followed, the user's x/y/log/monitor
remembered, statistics after every scan and live, meshes filling their map, detector frames
read from their files, concurrent scans. Real Redis, real producers, real figures (Agg)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from peers.scan_helpers import new_session
from waiting import wait_for

from beacon_ipy import get_session_node
from beacon_ipy.demo import ascan
from beacon_ipy.liveplot.choices import CHOICES
from beacon_ipy.liveplot.stats import curve_stats
from beacon_ipy.scans import StreamDescription as S
from beacon_ipy.scans import create_scan

DEMO = {"count_time": 0.001, "progress": False, "with_image": False}
COUNTERS = ["timer:elapsed_time", "simu:diode", "simu:monitor"]
UNITS = {"axis:sx": "mm", "axis:sy": "mm", "timer:elapsed_time": "s", "simu:diode": "counts",
         "simu:monitor": "counts"}


def bliss_info(kind: str, masters: list[str], npoints: int, **extra) -> dict:
    """scan_info shaped as BLISS 2.4 builds it (ScanInfo.set_channel_meta/add_*_plot)."""
    channels = {n: {"dim": 0, "display_name": n.split(":")[-1], "unit": UNITS[n]}
                for n in masters + COUNTERS}
    info = {"type": kind, "title": f"{kind} test", "npoints": npoints, "data_dim": 1,
            "channels": channels,
            "acquisition_chain": {"axis": {"devices": ["axis", "timer", "simu"],
                                           "scalars": COUNTERS, "spectra": [], "images": [],
                                           "master": {"scalars": masters, "spectra": [],
                                                      "images": []}}}}
    info.update(extra)
    return info


def publish(session: str, info: dict, masters: list[str]):
    specs = [S.scalar(n, unit=UNITS[n]) for n in masters + COUNTERS]
    return create_scan(session, info, specs).start()


def gaussian(x: np.ndarray) -> np.ndarray:
    return 1000 * np.exp(-((x - 0.62) ** 2) / (2 * 0.08 ** 2)) + 10


def lines(ax) -> dict[str, object]:
    return {line.get_label(): line for line in ax.get_lines()}


def test_bliss_ascan_hint_stats_after_the_scan_and_live(plots):
    session = new_session()
    plot = plots(session)
    info = bliss_info("ascan", ["axis:sx"], 41,
                      plots=[{"kind": "curve-plot", "items": [{"kind": "curve",
                                                               "x": "axis:sx"}]}])
    info["channels"]["axis:sx"].update(start=0.0, stop=1.0, points=41)
    x = np.linspace(0, 1, 41)
    scan = publish(session, info, ["axis:sx"])
    nb = scan.scan_nb
    for i in range(20):
        scan.push({"axis:sx": x[i], "timer:elapsed_time": 0.1 * i, "simu:diode": gaussian(x[i]),
                   "simu:monitor": 100.0 + i})
    plot.wait_drawn(nb, ended=False, points=20)
    live = plot.stats()
    assert live is not None and live.points == 20 and not live.ended
    assert live.peak == pytest.approx(x[19])  # the rising flank so far
    for i in range(20, 41):
        scan.push({"axis:sx": x[i], "timer:elapsed_time": 0.1 * i, "simu:diode": gaussian(x[i]),
                   "simu:monitor": 100.0 + i})
    scan.end()
    plot.wait_drawn(nb)
    nodes = get_session_node(session).get_scan(nb).nodes
    xs, ys = nodes["axis:sx"].get(), nodes["simu:diode"].get()
    expected = curve_stats(xs, ys, scan_nb=nb, y_name="simu:diode", x_name="axis:sx")
    final = plot.stats(nb)
    assert final == plot.stats() and final.ended
    assert (final.x, final.y, final.points) == ("axis:sx", "simu:diode", 41)
    for key in ("peak", "peak_value", "com", "cen", "fwhm"):
        assert getattr(final, key) == pytest.approx(getattr(expected, key)), key
    assert final.cen == pytest.approx(0.62, abs=0.01)
    assert final.fwhm == pytest.approx(2.3548 * 0.08, rel=0.05)
    with plot.view.lock:
        ax = plot.panel("curves")
        # Flint's default for an x-only curve hint: the first counter that is not a time
        assert list(lines(ax)) == [f"diode #{nb}"]
        assert ax.get_xlabel() == "sx (mm)"
        shown = [t.get_text() for t in ax.texts]
    assert any(t.startswith("diode: peak ") and f"cen {final.cen:.4g}" in t for t in shown), shown


def test_select_changes_the_plot_and_is_remembered_for_the_next_scans(plots, tmp_path):
    session = new_session()
    plot = plots(session)
    a = ascan("sx", 0, 1, 8, session=session, with_mca=False, **DEMO).scan_nb
    plot.wait_drawn(a)
    plot.select(x="elapsed_time", y=["diode", "simu:monitor"], log=True, normalize="monitor")
    # a frame in flight when select() was called may still show the old choice
    wait_for(lambda: plot.last_frame.plan.normalize == "simu:monitor" and plot.last_frame.log,
             what="a frame drawn with the new choice")
    nodes = get_session_node(session).get_scan(a).nodes
    diode, monitor = nodes["simu:diode"].get(), nodes["simu:monitor"].get()
    with plot.view.lock:
        ax = plot.panel("curves")
        got = lines(ax)
        assert set(got) == {f"diode/monitor #{a}", f"monitor/monitor #{a}"}
        ratio = diode / monitor  # a log axis leaves out what is not positive
        np.testing.assert_allclose(got[f"diode/monitor #{a}"].get_ydata(),
                                   np.where(ratio > 0, ratio, np.nan))
        np.testing.assert_allclose(got[f"diode/monitor #{a}"].get_xdata(),
                                   nodes["timer:elapsed_time"].get())
        assert ax.get_yscale() == "log" and ax.get_xlabel() == "elapsed_time (s)"
    assert plot.stats().y == "simu:diode" and plot.stats().monitor == "simu:monitor"
    # the next scan of the session shows the same choice
    b = ascan("sx", 0, 1, 5, session=session, with_mca=False, **DEMO).scan_nb
    plot.wait_drawn(b)
    with plot.view.lock:
        assert f"diode/monitor #{b}" in lines(plot.panel("curves"))
    # ... and so does another plot of the session, and a new process (the JSON file)
    other = plots(session)
    assert other.choice == plot.choice
    saved = json.loads((tmp_path / "config" / "liveplot.json").read_text())
    assert saved[session] == {"x": "elapsed_time", "y": ["diode", "simu:monitor"],
                              "log": True, "normalize": "monitor", "spectrum": None}
    fresh = plots(session, remember=False)
    assert fresh.choice.y is None and not fresh.choice.log
    # None goes back to the scan's default
    plot.select(x=None, y=None, log=False, normalize=None)
    assert CHOICES.get(session).y is None
    with pytest.raises(TypeError, match="log must be True or False"):
        plot.select(log="yes")
    with pytest.raises(ValueError, match="is not one the plot keeps"):
        plot.select(scan=10_000)


def test_bliss_mesh_fills_its_grid_as_points_arrive(plots):
    session = new_session()
    plot = plots(session)
    n_fast, n_slow = 5, 4
    info = bliss_info("amesh", ["axis:sx", "axis:sy"], n_fast * n_slow, data_dim=2,
                      plots=[{"kind": "scatter-plot", "items": [
                          {"kind": "scatter", "x": "axis:sx", "y": "axis:sy"}]}])
    for axis_id, (axis, start, stop, n) in enumerate([("axis:sx", 0.0, 1.0, n_fast),
                                                      ("axis:sy", -1.0, 1.0, n_slow)]):
        info["channels"][axis].update(start=start, stop=stop, points=n_fast * n_slow,
                                      axis_id=axis_id, axis_points=n, axis_kind="backnforth",
                                      group="scatter")
    scan = publish(session, info, ["axis:sx", "axis:sy"])
    nb = scan.scan_nb
    fx, fy = np.linspace(0, 1, n_fast), np.linspace(-1, 1, n_slow)
    values = []
    for i in range(n_fast * n_slow):
        row, col = divmod(i, n_fast)
        col = col if row % 2 == 0 else n_fast - 1 - col  # back and forth
        value = 10 * row + col
        values.append((row, col, value))
        scan.push({"axis:sx": fx[col], "axis:sy": fy[row], "timer:elapsed_time": 0.1 * i,
                   "simu:diode": float(value), "simu:monitor": 1.0})
        if i == 7:
            plot.wait_drawn(nb, ended=False, points=8)
            with plot.view.lock:
                grid = np.asarray(plot.panel("mesh").get_images()[0].get_array())
            assert np.isfinite(grid).sum() == 8  # the map fills as points arrive
            for r, c, v in values:
                assert grid[r, c] == v
    scan.end()
    plot.wait_drawn(nb)
    with plot.view.lock:
        ax = plot.panel("mesh")
        grid = np.asarray(ax.get_images()[0].get_array())
        assert (ax.get_xlabel(), ax.get_ylabel()) == ("sx (mm)", "sy (mm)")
    assert grid.shape == (n_slow, n_fast)
    for r, c, v in values:
        assert grid[r, c] == v
    # the user's choice applies to maps: the value (divided by a monitor), log colours
    plot.select(y="monitor", normalize="diode", log=True)
    wait_for(lambda: plot.last_frame.log and plot.last_frame.plan.y == ["simu:monitor"],
             what="a frame of the map with the new choice")
    with plot.view.lock:
        (image,) = plot.panel("mesh").get_images()
        ratio = np.asarray(image.get_array())
        assert type(image.norm).__name__ == "LogNorm"
    assert ratio[0, 1] == pytest.approx(1.0 / 1.0) and ratio[1, 2] == pytest.approx(1 / 12)
    assert np.isnan(ratio[0, 0])  # monitor / 0


def test_scatter_without_a_grid_is_drawn_point_by_point(plots):
    session = new_session()
    plot = plots(session)
    info = bliss_info("custom", ["axis:sx", "axis:sy"], 30, data_dim=2,
                      plots=[{"kind": "scatter-plot", "items": [
                          {"kind": "scatter", "x": "axis:sx", "y": "axis:sy",
                           "value": "simu:monitor"}]}])
    scan = publish(session, info, ["axis:sx", "axis:sy"])
    rng = np.random.default_rng(1)
    pos = rng.uniform(0, 1, (30, 2))
    for i, (px, py) in enumerate(pos):
        scan.push({"axis:sx": px, "axis:sy": py, "timer:elapsed_time": 0.1 * i,
                   "simu:diode": 1.0, "simu:monitor": float(i)})
    scan.end()
    plot.wait_drawn(scan.scan_nb)
    with plot.view.lock:
        (dots,) = plot.panel("scatter").collections
        np.testing.assert_allclose(dots.get_offsets(), pos)
        np.testing.assert_allclose(dots.get_array(), np.arange(30.0))


def test_detector_frames_are_read_from_their_files(plots):
    session = new_session()
    plot = plots(session)
    scan = ascan("sx", 0, 1, 6, session=session, with_mca=False,
                 **{**DEMO, "with_image": True})
    nb = scan.scan_nb
    plot.wait_drawn(nb)
    lima = get_session_node(session).get_scan(nb).nodes["simu2d:image"]
    last = lima.get_image(-1)
    with plot.view.lock:
        ax = plot.panel("detector")
        (image,) = ax.get_images()
        np.testing.assert_array_equal(np.asarray(image.get_array()), last.astype(np.float32))
        assert ax.get_title() == "simu2d" and "frame 6/6" in [t.get_text() for t in ax.texts]
    assert plot.draw_stats()["frames_read"] >= 1


def test_concurrent_scans_say_which_is_shown_and_the_user_picks(plots):
    session = new_session()
    plot = plots(session)
    infos = [bliss_info("ascan", ["axis:sx"], 10,
                        plots=[{"kind": "curve-plot", "items": [{"kind": "curve",
                                                                 "x": "axis:sx"}]}])
             for _ in range(2)]
    first = publish(session, infos[0], ["axis:sx"])
    second = publish(session, infos[1], ["axis:sx"])
    for i in range(3):
        for scan, scale in ((first, 1.0), (second, 2.0)):
            scan.push({"axis:sx": float(i), "timer:elapsed_time": 0.1 * i,
                       "simu:diode": scale * i, "simu:monitor": 1.0})
    plot.wait_drawn(second.scan_nb, ended=False, points=3)
    assert sorted(plot.running_scans()) == [first.scan_nb, second.scan_nb]
    wait_for(lambda: f"also running: #{first.scan_nb}" in plot.last_frame.note,
             what="the note naming the other running scan")
    plot.select(scan=first.scan_nb)
    plot.wait_drawn(first.scan_nb, ended=False, points=3)
    assert plot.shown_scan == first.scan_nb and plot.pinned == first.scan_nb
    with plot.view.lock:
        got = lines(plot.panel("curves"))
    np.testing.assert_allclose(got[f"diode #{first.scan_nb}"].get_ydata(), [0, 1, 2])
    assert f"also running: #{second.scan_nb}" in plot.last_frame.note
    first.end()
    second.end()
    plot.wait_drawn(first.scan_nb)
    plot.select(scan=None)  # back to following the newest
    plot.wait_drawn(second.scan_nb)
    assert plot.pinned is None


# -- a real kernel: the widget controls and %liveplot's options -------------------------------


@pytest.fixture(scope="module")
def kernel(kernels_dir, redis_url, tmp_path_factory):
    import os

    from jupyter_helpers import started_kernel

    config = tmp_path_factory.mktemp("kernel-config")
    old = os.environ.get("BEACON_IPY_CONFIG_DIR")
    os.environ["BEACON_IPY_CONFIG_DIR"] = str(config)  # inherited by the kernel
    try:
        with started_kernel(kernels_dir) as k:
            k.run("%load_ext beacon_ipy")
            yield k
    finally:
        if old is None:
            os.environ.pop("BEACON_IPY_CONFIG_DIR", None)
        else:
            os.environ["BEACON_IPY_CONFIG_DIR"] = old


def test_widget_controls_select_from_a_subshell_and_follow_the_frames(kernel):
    from jupyter_widget_helpers import send_click, send_update

    session = new_session()
    kernel.run(f"p = get_ipython().run_line_magic('liveplot', '{session} --y diode --log "
               "--backend ipympl')\ndisplay(p)\n"
               "from beacon_ipy.demo import ascan\n"
               f"nb = ascan('sx', 0, 1, 9, session={session!r}, count_time=0.001, "
               "progress=False, with_image=False, with_mca=False).scan_nb\n"
               "p.wait_drawn(nb)")
    assert kernel.eval("p.choice.as_dict()") == {"x": None, "y": ["diode"], "log": True,
                                                 "normalize": None, "spectrum": None}
    # the controls show the frame: the scan's counters, the drawn curve, the scans kept
    kernel.wait_until("p.controls.y.value == ('simu:diode',)")
    y_id, y_options = kernel.eval("(p.controls.y.model_id, [v for _, v in "
                                  "p.controls.y.options])")
    assert {"simu:diode", "simu:monitor", "axis:sx"} <= set(y_options)
    assert kernel.eval("p.controls.scan.options[1][1] == nb and 'diode</code> vs' in "
                       "p.controls.stats.value and 'cen' in p.controls.stats.value")
    # the user picks two curves, as JupyterLab sends it: to a subshell
    subshell = kernel.create_subshell()
    wanted = [y_options.index("simu:diode"), y_options.index("simu:monitor")]
    send_update(kernel, y_id, {"index": wanted}, subshell_id=subshell)
    kernel.wait_until("p.choice.y == ('simu:diode', 'simu:monitor')")
    kernel.wait_until("sorted(l.get_label() for l in p.panel('curves').get_lines()) == "
                      "[f'diode #{nb}', f'monitor #{nb}']")
    log_id = kernel.eval("p.controls.log.model_id")
    send_update(kernel, log_id, {"value": False}, subshell_id=subshell)
    kernel.wait_until("p.panel('curves').get_yscale() == 'linear'")
    send_click(kernel, kernel.eval("p.controls.default_y.model_id"), subshell_id=subshell)
    kernel.wait_until("p.choice.y is None and p.controls.y.value == ('simu:diode',)")
    # the scan control pins the shown scan ("newest" is option 0)
    send_update(kernel, kernel.eval("p.controls.scan.model_id"), {"index": 1},
                subshell_id=subshell)
    kernel.wait_until("p.pinned == nb")
    send_update(kernel, kernel.eval("p.controls.scan.model_id"), {"index": 0},
                subshell_id=subshell)
    kernel.wait_until("p.pinned is None")
    # remembered: the magic's next plot of the session starts with the choice
    kernel.run(f"q = get_ipython().run_line_magic('liveplot', '{session} --backend image')")
    assert kernel.eval("q.choice.log") is False and kernel.eval("p.running") is False
    kernel.run(f"q = get_ipython().run_line_magic('liveplot', '{session} --x elapsed_time "
               "--normalize monitor --backend image')")
    assert kernel.eval("(q.choice.x, q.choice.normalize)") == ("elapsed_time", "monitor")
    kernel.run(f"q = get_ipython().run_line_magic('liveplot', '{session} --default "
               "--backend image')")
    assert kernel.eval("q.choice.as_dict()") == {"x": None, "y": None, "log": False,
                                                 "normalize": None, "spectrum": None}
    kernel.run("%liveplot --stop")


def test_liveplot_magic_parses_the_choice_options():
    from IPython.core.magic_arguments import parse_argstring

    from beacon_ipy.jupyter.magics.core import BeaconMagics

    def parse(line):
        a = parse_argstring(BeaconMagics.liveplot, line)
        return a.session, a.x, a.y, a.log, a.normalize, a.default

    assert parse("demo") == ("demo", None, None, None, None, False)  # nothing forced
    assert parse("demo --y diode,monitor --x sx --normalize mon --log") == (
        "demo", "sx", "diode,monitor", True, "mon", False)
    assert parse("demo --counters diode --linear --default") == (
        "demo", None, "diode", False, None, True)


def test_curves_on_the_right_axis_as_the_hint_says(plots):
    session = new_session()
    plot = plots(session)
    info = bliss_info("ascan", ["axis:sx"], 6, plots=[{"kind": "curve-plot", "items": [
        {"kind": "curve", "x": "axis:sx", "y": "simu:diode", "y_axis": "left"},
        {"kind": "curve", "x": "axis:sx", "y": "simu:monitor", "y_axis": "right"}]}])
    scan = publish(session, info, ["axis:sx"])
    for i in range(6):
        scan.push({"axis:sx": 0.1 * i, "timer:elapsed_time": 0.1 * i, "simu:diode": float(i),
                   "simu:monitor": 1000.0 + i})
    scan.end()
    nb = scan.scan_nb
    plot.wait_drawn(nb)
    with plot.view.lock:
        left, right = plot.panel("curves"), plot.panel("curves_right")
        assert list(lines(left)) == [f"diode #{nb}"]
        (mon,) = right.get_lines()
        assert mon.get_label() == f"monitor #{nb}" and mon.get_linestyle() == "--"
        assert right.get_ylim()[0] <= 1000 and right.get_ylim()[1] >= 1005
        assert left.get_ylim()[1] < 100  # each axis its own range
        assert right.get_ylabel() == "monitor (counts)"
