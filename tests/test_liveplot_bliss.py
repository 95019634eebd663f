"""The live plot on a REAL BLISS 2.4 session, found through ``BEACON_HOST`` only (issue 11 §2).

A beacon-ipy ``LivePlot`` (Agg backend, in its own process whose environment has
``BEACON_HOST`` and no ``BEACON_REDIS_URL``, as a notebook's ``%liveplot demo`` on a beamline
would) follows the session while a real BLISS ``ascan`` runs (``tests/peers/bliss_ascan.py``,
real ``beacon-server``). Checks:

- the plotted curves (the figure's lines, not only the model) are BLISS's own data: x is the
  scanned motor's channel, y the counters, every point;
- the figure's title is BLISS's scan title, the frame shows the scan ended;
- ``plot.stats()`` (peak, com, cen, fwhm and the motor they are positions of) equals what
  BLISS's own ``scan_math`` computes, in the BLISS interpreter, on BLISS's data.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import gevent
import pytest
from gevent import subprocess

PEERS = Path(__file__).parent / "peers"
NPOINTS = 20

#: The plot's process: follows SESSION, prints {"ready": true}, then, once a scan has been
#: drawn ended, one JSON line with what the figure shows and plot.stats().
PLOT_PEER = r"""
import sys
from beacon_ipy.jupyter.liveplot import LivePlot

plot = LivePlot(sys.argv[1], backend="agg", include_last=False)
print('{"ready": true}', flush=True)
plot.wait_drawn(None, ended=True, timeout=float(sys.argv[2]))
"""  # then REPORT, then plot.close()

#: Prints what ``plot`` shows as one JSON line (in the plot's process or kernel).
REPORT = r"""
import json as _json
_shown = plot.wait_drawn(None, ended=True, timeout=1)
_nb, _frame = _shown["scan_nb"], plot.last_frame
with plot.view.lock:
    _lines = {l.get_label(): [l.get_xdata().tolist(), l.get_ydata().tolist()]
              for l in plot.panel("curves").get_lines()}
    _title = plot.figure._suptitle.get_text()
_stats, _live = plot.stats(_nb), plot.stats()
print(_json.dumps({
    "shown": _shown, "title": _title, "lines": _lines,
    "curves": [{"channel": c.channel, "label": c.label, "x": c.x.tolist(), "y": c.y.tolist()}
               for c in _frame.curves if c.current],
    "x_channel": _frame.plan.x, "stats": _stats.as_dict() if _stats is not None else None,
    "live_stats": _live.as_dict() if _live is not None else None,
}), flush=True)
"""

#: BLISS's own statistics (``bliss.scanning.scan_math``, what ``peak()``/``cen()``/... of
#: ``bliss.scanning.scan_tools`` call) on the curve given on stdin as JSON [x, y].
BLISS_STATS = r"""
import json, sys, numpy
from bliss.scanning import scan_math
x, y = (numpy.asarray(v, dtype=float) for v in json.load(sys.stdin))
p = scan_math.peak2(x, y)
c = scan_math.cen(x, y)
print(json.dumps({"peak": float(p[0]), "peak_value": float(p[1]),
                  "com": float(scan_math.com(x, y)), "cen": float(c[0]),
                  "fwhm": float(c[1])}))
"""


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-9, abs=1e-12)


@pytest.mark.bliss
@pytest.mark.slow
@pytest.mark.timeout(420)
def test_liveplot_follows_a_real_bliss_ascan_through_beacon_host(beacon_server, tmp_path):
    # the user's remembered choices stay out of it
    env = beacon_server.env(MPLBACKEND="Agg", BEACON_IPY_CONFIG_DIR=str(tmp_path / "config"))
    assert "BEACON_REDIS_URL" not in env and env["BEACON_HOST"] == beacon_server.beacon_host
    plot = subprocess.Popen([sys.executable, "-c", PLOT_PEER + REPORT + "plot.close()\n",
                             "demo", "300"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with gevent.Timeout(90, AssertionError("the live plot never got ready")):
            line = plot.stdout.readline()
        assert json.loads(line or "{}") == {"ready": True}, plot.stderr.read()
        bliss = run_bliss_ascan(beacon_server)
        out, err = plot.communicate(timeout=120)
    finally:
        if plot.poll() is None:
            plot.kill()
    assert plot.returncode == 0, err[-3000:]
    check_plot(json.loads(out.strip().splitlines()[-1]),
               json.loads(bliss.stdout.strip().splitlines()[-1]), beacon_server)


def run_bliss_ascan(beacon_server) -> subprocess.CompletedProcess:
    bliss = subprocess.run([beacon_server.bliss_python, str(PEERS / "bliss_ascan.py"),
                            str(NPOINTS)], env=beacon_server.env(), capture_output=True,
                           text=True, timeout=300)
    assert bliss.returncode == 0, bliss.stderr[-3000:]
    return bliss


def check_plot(ours: dict, theirs: dict, beacon_server) -> None:
    """What the plot shows (``REPORT``) is BLISS's scan; its stats are scan_math's."""
    env = beacon_server.env()
    data = theirs["data"]
    nb = theirs["scan_number"]

    # the scan shown is BLISS's, ended, every point, with BLISS's title
    assert ours["shown"] == {"scan_nb": nb, "points": NPOINTS + 1, "ended": True}
    assert "ascan roby 0.0000 1.0000 20" in ours["title"], ours["title"]
    # x: the scanned motor; y: counters of the scan; the figure's lines are BLISS's data
    assert ours["x_channel"] == "axis:roby"
    assert ours["curves"], f"no curve plotted: {ours}"
    for curve in ours["curves"]:
        assert curve["channel"] in data, (curve["channel"], sorted(data))
        assert curve["channel"] not in ("axis:roby", "timer:elapsed_time", "timer:epoch")
        assert curve["x"] == pytest.approx(data["axis:roby"])
        assert curve["y"] == pytest.approx(data[curve["channel"]])
        line_x, line_y = ours["lines"][curve["label"]]
        assert line_x == pytest.approx(data["axis:roby"]), "the figure's line x"
        assert line_y == pytest.approx(data[curve["channel"]]), "the figure's line y"
        assert len(line_x) == NPOINTS + 1

    # plot.stats(): the first plotted curve, against the motor, as BLISS's scan_math says
    stats = ours["stats"]
    assert stats is not None, "no final statistics for the scan"
    assert stats == ours["live_stats"], "the last frame's stats are the final ones"
    channel = ours["curves"][0]["channel"]
    assert (stats["scan_nb"], stats["x"], stats["y"], stats["points"], stats["ended"]) == (
        nb, "axis:roby", channel, NPOINTS + 1, True)
    ref = subprocess.run([beacon_server.bliss_python, "-c", BLISS_STATS], env=env,
                         input=json.dumps([data["axis:roby"], data[channel]]),
                         capture_output=True, text=True, timeout=120)
    assert ref.returncode == 0, ref.stderr[-3000:]
    expected = json.loads(ref.stdout.strip().splitlines()[-1])
    for key, value in expected.items():
        assert same(stats[key], value), (key, stats[key], value)
    assert stats["peak"] in data["axis:roby"], "peak is a motor position of the scan"


@pytest.mark.bliss
@pytest.mark.slow
@pytest.mark.timeout(420)
def test_liveplot_magic_in_a_kernel_follows_a_real_bliss_ascan(beacon_server, kernels_dir,
                                                               monkeypatch, tmp_path):
    """The user's path: ``%liveplot demo`` in a real beacon kernel whose environment has
    only ``BEACON_HOST`` (ipympl canvas, controls), while BLISS scans."""
    from jupyter_helpers import started_kernel

    monkeypatch.delenv("BEACON_REDIS_URL", raising=False)  # the kernel inherits os.environ
    monkeypatch.setenv("BEACON_IPY_CONFIG_DIR", str(tmp_path / "config"))
    with started_kernel(kernels_dir, env=beacon_server.env()) as kernel:
        assert kernel.eval("import os; ('BEACON_REDIS_URL' in os.environ, "
                           "os.environ.get('BEACON_HOST'))") == (False,
                                                                 beacon_server.beacon_host)
        kernel.run("%load_ext beacon_ipy\n"
                   "plot = get_ipython().run_line_magic('liveplot', 'demo --new-only')\n"
                   "display(plot)", timeout=60)
        assert kernel.eval("plot.backend") == "ipympl"
        bliss = run_bliss_ascan(beacon_server)
        kernel.run("plot.wait_drawn(None, ended=True, timeout=60)", timeout=90)
        out = kernel.run(REPORT, timeout=30).stdout
        # the widget controls show BLISS's scan too
        assert kernel.eval("plot.controls.scan.options[1][1] == plot.shown['scan_nb'] and "
                           "'vs <code>roby</code>' in plot.controls.stats.value")
    check_plot(json.loads(out.strip().splitlines()[-1]),
               json.loads(bliss.stdout.strip().splitlines()[-1]), beacon_server)
