"""What the live plot draws: BLISS's plot hints (made by BLISS 2.4's own ``ScanInfo`` in the
real-BLISS virtualenv), the user's choice, and today's rules without hints. Pure logic."""

from __future__ import annotations

import json
import subprocess

import pytest

from beacon_ipy.liveplot.data import ScanModel
from beacon_ipy.liveplot.selection import INDEX, Choice, plan_scan, read_hints

#: BLISS's ScanInfo builds the hints exactly as its scans do (meshes.py, step_by_step.py),
#: run in the full BLISS 2.4 virtualenv (with its blissdata), as a BLISS session would.
BLISS_HINTS = r"""
import json
from bliss.scanning.scan_info import ScanInfo

out = {}
s = ScanInfo()                                   # ascan (step_by_step.py)
s.add_curve_plot(x="axis:sx")
s.set_channel_meta("axis:sx", start=0.0, stop=2.0, points=12)
out["ascan"] = dict(s)
s = ScanInfo()                                   # amesh (meshes.py), back and forth
for i, (m, a, b, n) in enumerate([("axis:sx", 0.0, 1.0, 4), ("axis:sy", -1.0, 1.0, 3)]):
    s.set_channel_meta(m, start=a, stop=b, points=12, axis_id=i, axis_points=n,
                       axis_kind="backnforth", group="scatter")
s.add_scatter_plot(x="axis:sx", y="axis:sy")
for c in ("timer:elapsed_time", "simu:diode", "simu:monitor"):
    s.set_channel_meta(c, group="scatter")
out["amesh"] = dict(s)
s = ScanInfo()                                   # a user scan with left and right curves
s.add_curve_plot(x="axis:sx", yleft=["simu:diode", "simu:monitor"], yright="simu:temp")
s.add_1d_plot(name="spectra", x="mca1:energy", y=["mca1:spectrum"])
out["custom"] = dict(s)
s = ScanInfo()                                   # timescan
s.add_curve_plot(x="timer:elapsed_time")
out["timescan"] = dict(s)
print(json.dumps(out))
"""

UNITS = {"axis:sx": "mm", "axis:sy": "mm", "timer:elapsed_time": "s", "timer:epoch": "s",
         "simu:diode": "counts", "simu:monitor": "counts", "simu:temp": "K"}


@pytest.fixture(scope="module")
def bliss_hints(full_bliss_python) -> dict:
    done = subprocess.run([full_bliss_python, "-c", BLISS_HINTS], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def chain(masters: list[str], scalars: list[str], images=(), spectra=()) -> dict:
    """A BLISS-shaped acquisition chain (counters after the timer's channels)."""
    return {"acquisition_chain": {"axis": {
        "devices": [], "scalars": scalars, "spectra": list(spectra), "images": list(images),
        "master": {"scalars": masters, "spectra": [], "images": []}}}}


def model(info: dict, zero_d: list[str], spectra=(), images=()) -> ScanModel:
    m = ScanModel(1, info)
    for name in zero_d:
        m.add_channel(name, (), UNITS.get(name, ""))
    for name in spectra:
        m.add_channel(name, (2048,), "counts")
    for name in images:
        m.add_image(name, (64, 80))
    return m


COUNTERS = ["timer:elapsed_time", "timer:epoch", "simu:diode", "simu:monitor"]


def test_ascan_hint_gives_its_motor_and_flints_default_counter(bliss_hints):
    info = {**bliss_hints["ascan"], **chain(["axis:sx"], COUNTERS)}
    m = model(info, ["axis:sx", *COUNTERS])
    plan = plan_scan(m)
    assert (plan.kind, plan.source, plan.x, plan.y) == ("curves", "hints", "axis:sx",
                                                        ["simu:diode"])
    # BLISS's plotselect travels in display_extra: Flint shows those
    m.info["display_extra"] = {"plotselect": ["simu:monitor", "simu:nothere"]}
    assert plan_scan(m).y == ["simu:monitor"]
    # without hints: today's rules (every counter but masters and timers)
    plain = model(chain(["axis:sx"], COUNTERS), ["axis:sx", *COUNTERS])
    assert plan_scan(plain).y == ["simu:diode", "simu:monitor"]
    assert plan_scan(plain).source == "inferred"


def test_timescan_hint_plots_against_elapsed_time(bliss_hints):
    info = {**bliss_hints["timescan"], **chain(["timer:elapsed_time"], COUNTERS[1:])}
    plan = plan_scan(model(info, COUNTERS))
    assert plan.x == "timer:elapsed_time" and plan.y == ["simu:diode"]


def test_left_and_right_curves_and_the_1d_plot(bliss_hints):
    info = {**bliss_hints["custom"], **chain(["axis:sx"], [*COUNTERS, "simu:temp"],
                                             spectra=["mca1:spectrum", "mca2:spectrum"])}
    m = model(info, ["axis:sx", *COUNTERS, "simu:temp"],
              spectra=["mca2:spectrum", "mca1:spectrum"])
    plan = plan_scan(m)
    assert plan.y == ["simu:diode", "simu:monitor"] and plan.y_right == ["simu:temp"]
    assert plan.curves == ["simu:diode", "simu:monitor", "simu:temp"]
    assert plan.spectra == ["mca1:spectrum"]  # the 1d-plot's, not the first declared
    hints = read_hints(info)
    assert hints.one_d == {"x": "mca1:energy", "y": ["mca1:spectrum"]}


def test_amesh_hint_is_a_scatter_on_its_grid_with_flints_default_value(bliss_hints):
    info = {**bliss_hints["amesh"], "data_dim": 2,
            **chain(["axis:sx", "axis:sy"], COUNTERS)}
    m = model(info, ["axis:sx", "axis:sy", *COUNTERS])
    plan = plan_scan(m)
    assert plan.kind == "scatter" and plan.axes == ("axis:sx", "axis:sy")
    assert plan.y == ["simu:diode"]  # first counter of the group that is not a time
    assert plan.grid == (3, 4) and plan.extent == (0.0, 1.0, -1.0, 1.0) and plan.backnforth
    assert plan_scan(m, Choice(y=("monitor",))).y == ["simu:monitor"]
    # a scatter whose axes carry no grid metadata is drawn point by point
    for axis in ("axis:sx", "axis:sy"):
        info["channels"][axis].pop("axis_points")
    assert plan_scan(m).grid is None


def test_the_users_choice_wins_channel_by_channel(bliss_hints):
    info = {**bliss_hints["ascan"], **chain(["axis:sx"], COUNTERS + ["simu:temp"])}
    m = model(info, ["axis:sx", *COUNTERS, "simu:temp"])
    plan = plan_scan(m, Choice(x="elapsed_time", y=("diode", "simu:temp", "nothere"),
                               log=True, normalize="monitor"))
    assert plan.x == "timer:elapsed_time" and plan.y == ["simu:diode", "simu:temp"]
    assert plan.log and plan.normalize == "simu:monitor"
    assert plan.notes == ["no counter 'nothere' in this scan (it has sx, elapsed_time, "
                          "epoch, diode, monitor, temp)"]
    assert plan_scan(m, Choice(x=INDEX)).x is None  # the point index
    odd = plan_scan(m, Choice(x="sz", normalize="mon2"))
    assert odd.x == "axis:sx"  # back to the hint's
    assert odd.notes == ["no x axis 'sz' in this scan", "no monitor 'mon2' in this scan"]
    assert plan_scan(m, Choice(y=("nothere",))).y == ["simu:diode"]  # the default again


def test_detector_images_prefer_limas_image_channel():
    info = chain(["timer:elapsed_time"], COUNTERS[1:], images=["cam:roi_image", "cam:image"])
    m = model(info, COUNTERS, images=["cam:roi_image", "cam:image"])
    assert plan_scan(m).images == ["cam:image"]
    info["plots"] = [{"kind": "image-plot", "signal": "cam:roi_image"}]  # older demo hint
    assert read_hints(info).images == ["cam:roi_image"]


def test_choice_validation_says_what_is_wrong():
    assert Choice().updated(y="a, b").y == ("a", "b")
    with pytest.raises(TypeError, match="x must be one channel name"):
        Choice().updated(x=["a", "b"])
    with pytest.raises(ValueError, match="no name given"):
        Choice().updated(y=" , ")
    with pytest.raises(TypeError, match="log must be True or False"):
        Choice().updated(log="yes")
    c = Choice(x="sx", y=("d",), log=True, normalize="m", spectrum=("s",))
    assert Choice.from_dict(json.loads(json.dumps(c.as_dict()))) == c


def test_choices_persist_in_json_and_survive_bad_files(tmp_path, monkeypatch, caplog):
    from beacon_ipy.liveplot.choices import ChoiceStore, choices_path

    monkeypatch.setenv("BEACON_IPY_CONFIG_DIR", str(tmp_path / "cfg"))
    assert choices_path() == tmp_path / "cfg" / "liveplot.json"
    one, two = ChoiceStore(), ChoiceStore()  # two processes sharing the file
    assert one.get("demo") == Choice()
    chosen = Choice(x="sx", y=("diode",), log=True)
    one.set("demo", chosen)
    assert two.get("demo") == chosen  # read from the file
    changed = chosen.updated(normalize="monitor")
    two.set("demo", changed)
    assert one.get("demo") == changed  # re-read: the other process changed it
    one.forget("demo")
    assert ChoiceStore().get("demo") == Choice() and two.get("demo") == Choice()
    # a corrupt file is ignored (logged); an unwritable place keeps choices in memory
    choices_path().write_text("{not json")
    assert ChoiceStore().get("demo") == Choice()
    assert "ignoring" in caplog.text
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("")
    memory = ChoiceStore(path=blocked / "liveplot.json")
    memory.set("demo", chosen)
    assert memory.get("demo") == chosen and "kept in memory only" in caplog.text
    assert ChoiceStore(persist=False).get("demo") == Choice()
