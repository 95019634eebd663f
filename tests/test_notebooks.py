"""The notebooks of ``notebooks/`` run headless on the beacon kernel and do what they say.

Each notebook is executed by nbclient, cell by cell, on a real ``beacon`` kernel (temporary
kernelspec), against the test Redis (``BEACON_REDIS_URL``), with small parameters injected
after its ``parameters`` cell and its files written in a temporary folder. Then the
checks look at real results: the values cells printed, the widgets they displayed (their
recorded state, and the live objects in the kernel), what other processes see, and the
HDF5 files written. Where a notebook invites the user to move a widget, the test sends
what a browser would send over the widget's comm.
"""

from __future__ import annotations

import os
import re

import h5py
import nbformat
import numpy as np
import pytest
from notebook_helpers import (
    NOTEBOOKS,
    NOTEBOOKS_DIR,
    bound_control,
    children,
    find_cell,
    notebook_run,
    prepare,
    result,
    text,
    widget_ids,
    widget_state,
)
from peer import Peer
from waiting import wait_for

pytestmark = pytest.mark.timeout(240)


def test_notebooks_are_committed_clean():
    """No outputs or execution counts in git, the beacon kernel by name, one parameters
    cell, and every notebook (and its helper) known to `beacon-ipy lab`."""
    from beacon_ipy.jupyter.lab_cli import HELPERS
    from beacon_ipy.jupyter.lab_cli import NOTEBOOKS as LAB_NOTEBOOKS

    assert sorted(LAB_NOTEBOOKS) == sorted(f"{n}.ipynb" for n in NOTEBOOKS)
    for helper in HELPERS:
        assert (NOTEBOOKS_DIR / helper).is_file()
    for name in NOTEBOOKS:
        nb = nbformat.read(NOTEBOOKS_DIR / f"{name}.ipynb", as_version=4)
        nbformat.validate(nb)
        assert nb.metadata["kernelspec"]["name"] == "beacon", name
        dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"
                 and (c.outputs or c.execution_count is not None)]
        assert not dirty, (f"{name}.ipynb has outputs in cells {dirty}: run "
                           f"jupyter nbconvert --clear-output --inplace notebooks/*.ipynb")
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, f"{name}.ipynb needs exactly one cell tagged 'parameters'"


@pytest.fixture
def peer():
    p = Peer("channel_peer.py")
    p.expect("ready")
    yield p
    p.close()


def test_quickstart(kernels_dir, tmp_path):
    prefix = f"test:nb:{os.getpid()}:quickstart"
    nb = prepare("quickstart", tmp_path, PREFIX=prefix)
    with notebook_run(nb, tmp_path, kernels_dir) as run:
        run.run_until("motor.terminate()")
        run.check_no_errors()

        # the default, then the second process's "ready" line and its position
        assert result(find_cell(nb, "velocity = Channel(")) == "1.0"
        ready = re.search(r"motor (\d+) ready: position ([\d.]+), velocity 1.0",
                          text(find_cell(nb, "motor = subprocess.Popen")))
        assert ready, text(find_cell(nb, "motor = subprocess.Popen"))
        motor_pid = int(ready.group(1))
        assert 0.0 <= float(result(find_cell(nb, "position = Channel("))) <= 10.0

        # two bound sliders displayed: velocity (editable), position (read-only)
        bind_cell = find_cell(nb, "speed = bind(")
        run.record_widget_state()
        speed_id, speed = bound_control(nb, widget_ids(bind_cell)[0])
        _, where = bound_control(nb, widget_ids(bind_cell)[1])
        assert (speed["_model_name"], speed["min"], speed["max"]) == ("FloatSliderModel", 0, 5)
        assert speed["description"] == "velocity" and not speed["disabled"]
        assert (where["_model_name"], where["max"], where["disabled"]) == (
            "FloatSliderModel", 10, True)
        assert widget_ids(find_cell(nb, "log = event_log("))

        # velocity.value = 2.5 moved the slider and the motor process answered in the log
        run.wait_until("speed.widget.value == 2.5")
        run.wait_until(f"any(e == 'motor {motor_pid}: velocity is now 2.5' "
                       f"for _, e in log.events)", what="the motor's answer in the log")
        run.wait_until("any(e == 'hello from the notebook' for _, e in log.events)")
        # the position slider follows the other process
        first = run.eval("where.widget.value")
        run.wait_until(f"where.widget.value != {first!r}", what="position slider moving")

        # callbacks ran while the cell slept
        moves = re.search(r"(\d+) positions received in 1 s",
                          text(find_cell(nb, "moves = []")))
        assert moves and int(moves.group(1)) >= 3, text(find_cell(nb, "moves = []"))
        assert run.eval("on_move in position.callbacks") is False

        # the %channel table lists the three channels with the velocity we set
        table = text(find_cell(nb, "%channel"))
        for name in ("velocity", "position", "log"):
            assert f"{prefix}:{name}" in table
        assert re.search(rf"{re.escape(prefix)}:velocity\s+Channel\s+2.5", table), table

        # moving the slider in the "browser" sets the velocity in the motor process
        run.set_widget(speed_id, value=4.0)
        run.wait_until(f"any(e == 'motor {motor_pid}: velocity is now 4.0' "
                       f"for _, e in log.events)", what="the motor seeing the slider move")
        assert run.eval("velocity.value") == 4.0

        run.run_all()
        run.check_no_errors()
        assert "motor exit code: 0" in text(find_cell(nb, "motor.terminate()"))
        run.wait_until(f"any(e.startswith('motor {motor_pid}: stopped at') "
                       f"for _, e in log.events)")


def test_live_scans(kernels_dir, tmp_path, peer):
    session = f"nbtest-{os.getpid()}-live"
    npoints, data_dir = 12, tmp_path / "data"
    nb = prepare("live_scans", tmp_path, SESSION=session, SCANS=2, NPOINTS=npoints,
                 COUNT_TIME=0.02, DATA_DIR=str(data_dir))
    # a count time left by an earlier run (another process holds it): the notebook
    # starts from its own COUNT_TIME all the same (issue 12, §2)
    with Peer("channel_peer.py") as earlier, notebook_run(nb, tmp_path, kernels_dir) as run:
        earlier.expect("ready")
        earlier.request(cmd="channel", name=f"{session}:count_time", value=0.4)
        run.run_until("running = gevent.spawn(")
        run.check_no_errors()
        wait_for(lambda: earlier.request(cmd="get", name=f"{session}:count_time")["value"]
                 == 0.02, what="the earlier process getting the notebook's count time")
        earlier.request(cmd="exit")
        run.record_widget_state()
        (saver_panel,) = widget_ids(find_cell(nb, "%savescans $SESSION"))
        assert widget_state(nb, saver_panel)["_model_name"] == "HTMLModel"
        (plot_view,) = widget_ids(find_cell(nb, "plot = liveplot("))  # controls + canvas
        assert widget_state(nb, plot_view)["_model_name"] == "VBoxModel"
        canvas = children(nb, plot_view)[-1]
        assert widget_state(nb, canvas)["_model_name"] == "MPLCanvasModel"
        (slider_view,) = widget_ids(find_cell(nb, "slider = bind("))
        slider_id, slider = bound_control(nb, slider_view)
        assert (slider["_model_name"], slider["value"], slider["min"], slider["max"]) == (
            "FloatSliderModel", 0.02, 0, 0.5)

        # another process sets the shared count time: the slider follows, and the scans
        # started next use it
        peer.request(cmd="set", name=f"{session}:count_time", value=0.03)
        run.wait_until("slider.widget.value == 0.03", what="slider following another process")
        run.run_until("%savescans --stop")
        printed = text(find_cell(nb, "scans = running.get()"))
        numbers = [int(n) for n in re.findall(
            rf"scan (\d+): ascan sx 0.0 1.0 {npoints} 0.03 -> SUCCESS", printed)]
        assert len(numbers) == 2, printed
        last = numbers[-1]

        # the live plot showed the last scan complete, with several redraws
        run.execute(f"plot.wait_drawn({last}, timeout=15)")
        stats = run.eval("{k: plot.draw_stats()[k] for k in ('scan_nb', 'points', 'draws', "
                         "'error', 'backend')}")
        assert stats["scan_nb"] == last and stats["points"] == npoints, stats
        assert stats["draws"] >= 3 and stats["error"] == "" and stats["backend"] == "ipympl"

        # moving the slider in the "browser" sets the channel for the other process
        run.set_widget(slider_id, value=0.25)
        run.wait_until("count_time.value == 0.25")
        wait_for(lambda: peer.request(cmd="get", name=f"{session}:count_time")["value"] == 0.25,
                 what="another process seeing the slider's value")

        run.run_all()
        run.check_no_errors()
        # the final plot's axis labels are inside the figure, not clipped (issue 12, §3)
        corners = run.eval("(fig.canvas.draw(), [float(ax.xaxis.label.get_window_extent().y0), "
                           "float(ax.yaxis.label.get_window_extent().x0)])[1]")
        assert min(corners) >= 0, corners

    # the saver wrote each scan, with the data that went through Redis
    from silx.io.nxdata import get_default

    from beacon_ipy.scans import get_session_node

    node = get_session_node(session)
    for nb_ in numbers:
        path = data_dir / session / f"scan{nb_:04d}.h5"
        assert path.is_file(), sorted(p.name for p in (data_dir / session).iterdir())
        with h5py.File(path, "r") as f:
            nxdata = get_default(f)
            assert nxdata is not None and nxdata.is_valid, f"no valid default NXdata in {path}"
            np.testing.assert_array_equal(
                nxdata.signal[()], node.get_scan(nb_).get_node("simu:diode").get())
            assert len(nxdata.axes[0]) == npoints
    with h5py.File(data_dir / f"{session}.h5", "r") as master:
        assert master.attrs["default"] == f"{last}.1"
    listing = text(find_cell(nb, "layout = SaveLayout("))
    assert f"entry {last}.1: {data_dir / session / f'scan{last:04d}.h5'}" in listing

    # the last cell read the default NXdata back from the file and plotted it
    final = find_cell(nb, "with h5py.File(layout.master")
    assert (f"/{last}.1 (ascan sx 0.0 1.0 {npoints} 0.03): /{last}.1/plotselect, {npoints} "
            f"points of simu/diode against sx/value") in text(final)
    assert any("image/png" in out.get("data", {}) for out in final.outputs), final.outputs


def test_cached_values(kernels_dir, tmp_path):
    device = f"nbtest{os.getpid()}det"
    nb = prepare("cached_values", tmp_path, DEVICE=device)
    with notebook_run(nb, tmp_path, kernels_dir) as run:
        run.run_all()
        run.check_no_errors()
        assert result(find_cell(nb, "det = Detector(DEVICE)")) == "0.1"
        (editor_id,) = widget_ids(find_cell(nb, "editor = cache_editor(det)"))
        run.record_widget_state()
        assert widget_state(nb, editor_id)["_model_name"] == "VBoxModel"

        # another process saw what the notebook set, then the defaults after clear_cache
        assert text(find_cell(nb, 'det.trigger_mode.value = "external"')) == (
            "exposure_time: 0.5\ntrigger_mode:  'external'\n")
        assert text(find_cell(nb, "clear_cache(det)\nprint(")) == (
            "exposure_time: 0.1\ntrigger_mode:  'internal'\n")
        # and the notebook saw what another process set
        assert result(find_cell(nb, "det.exposure_time.value", exact=True)) == "2.0"

        rows = "{b.channel.name.split(':')[-1]: b.widget.value for b in editor.bindings}"
        run.wait_until(f"{rows}['exposure_time'] == 2.0", what="the editor following")
        assert run.eval(rows) == {"exposure_time": 2.0, "trigger_mode": "internal",
                                  "roi": {"x": 0, "y": 0, "width": 1024, "height": 1024}}

        # typing in the editor (as a browser does) sets the value for other processes
        ids = run.eval("{b.channel.name.split(':')[-1]: b.widget.model_id "
                       "for b in editor.bindings}")
        run.set_widget(ids["trigger_mode"], value="gated")
        run.wait_until("det.trigger_mode.value == 'gated'")
        assert run.eval("ask_another_process('trigger_mode')") == "'gated'"

        # the reset button calls clear_cache: every value back to its default, everywhere
        reset_id = run.eval("editor.reset_button.model_id")
        run.click(reset_id)
        run.wait_until(f"{rows} == {{'exposure_time': 0.1, 'trigger_mode': 'internal', "
                       f"'roi': {{'x': 0, 'y': 0, 'width': 1024, 'height': 1024}}}}",
                       what="the editor showing the defaults")
        assert run.eval("ask_another_process('exposure_time')") == "0.1"
