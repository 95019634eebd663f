"""The demo acquisition: realistic scans through the public producer API, real HDF5 frames."""

from __future__ import annotations

import sys

import gevent
import gevent.event
import h5py
import numpy as np
from gevent import subprocess
from peers.scan_helpers import Collector, new_session, wait_for

from beacon_ipy import get_session_node
from beacon_ipy.demo import amesh, ascan, run_demo, timescan


def test_run_demo_publishes_three_kinds_of_scan(tmp_path, capsys):
    session = new_session()
    walk = Collector(lambda s: get_session_node(session).walk_on_new_events(
        from_next=True, started_event=s), stop_at_end=3)
    scans = run_demo(session, scans=3, npoints=6, count_time=0.001, data_dir=tmp_path,
                     progress=True, frames_per_file=4)
    assert [s.scan_info["type"] for s in scans] == ["ascan", "timescan", "amesh"]
    assert all(s.end_reason == "SUCCESS" for s in scans)
    assert "100%" in capsys.readouterr().err  # tqdm progress bars
    events = walk.wait()
    ends = [e for e in events if e[0] == "END_SCAN"]
    assert [e[1].scan_nb for e in ends] == [s.scan_nb for s in scans]
    snode = get_session_node(session)

    asc = snode.get_scan(scans[0].scan_nb)
    info = asc.info
    assert info["title"].startswith("ascan sx 0.0 1.0 6") and info["npoints"] == 6
    assert info["count_time"] == 0.001 and info["scan_nb"] == scans[0].scan_nb
    master = info["acquisition_chain"]["timer"]["master"]
    assert master["scalars"] == ["axis:sx"] and master["units"] == {"axis:sx": "mm"}
    assert set(info["positioners"]["positioners_start"]) == {"sx", "sy"}
    assert info["instrument"]["simu2d"]["pixel_size_um"] == [55.0, 55.0]
    assert info["channels"]["simu:diode"]["display_name"] == "diode"
    # --data-dir: the identity's absolute path lies under it, and so do the frames
    scan_dir = tmp_path / session / f"scan{scans[0].scan_nb:04d}"
    assert asc.handle.path == str(tmp_path / session / f"{session}.h5")
    assert asc.handle.session == session and asc.handle.path in asc.handle.info["h5maps"]
    assert "h5maps" not in info  # the seed API shows BLISS 1 style scan_info
    assert info["plots"][0]["signal"] == "simu:diode" and info["plots"][0]["axes"] == ["axis:sx"]
    nodes = asc.nodes
    np.testing.assert_allclose(nodes["axis:sx"].get(), np.linspace(0, 1, 6))
    assert nodes["mca1:spectrum"].get().shape == (6, 2048)
    assert nodes["simu:diode"].get().max() > nodes["simu:diode"].get().min()
    assert asc.end.info["positioners_end"]["sx"] == 1.0 and asc.end.reason == "SUCCESS"

    # the 2D detector wrote real frames, 4 per file; references resolve to them
    cam = nodes["simu2d:image"]
    refs = cam.get_references()
    assert len(refs) == 6 and len({r.file for r in refs}) == 2
    assert all(r.file.startswith(str(scan_dir)) for r in refs)
    assert [r.index for r in refs] == [0, 1, 2, 3, 0, 1]
    with h5py.File(refs[5].file, "r") as fh:
        expected = fh[refs[5].path][refs[5].index]
    frame = cam.get_image(5)
    assert frame.shape == (64, 80) and frame.dtype == np.uint16 and frame.sum() > 0
    np.testing.assert_array_equal(frame, expected)
    np.testing.assert_array_equal(cam.get_image(-1), expected)

    mesh = snode.get_scan(scans[2].scan_nb)
    n = mesh.info["npoints"]
    assert mesh.info["npoints1"] * mesh.info["npoints2"] == n >= 6
    assert mesh.info["shape"] == [mesh.info["npoints2"], mesh.info["npoints1"]]
    assert mesh.info["plots"][0]["kind"] == "scatter-plot"
    assert len(mesh.nodes["axis:sy"].get()) == n
    assert len(snode.get_scan(scans[1].scan_nb).nodes["timer:elapsed_time"]) == 6


def test_scan_functions_and_options(tmp_path):
    session = new_session()
    scan = ascan("sy", 1.0, 2.0, 3, 0.001, session=session, with_mca=False, with_image=False)
    node = get_session_node(session).get_scan(scan.scan_nb)
    assert set(node.nodes) == {"axis:sy", "timer:elapsed_time", "timer:epoch", "simu:diode",
                               "simu:monitor", "simu:diode_norm"}
    t = timescan(0.001, 2, session=session, data_dir=tmp_path)
    m = amesh("sx", 0, 1, 2, "sy", 0, 1, 3, 0.001, session=session, data_dir=tmp_path)
    assert get_session_node(session).get_scan(m.scan_nb).info["shape"] == [3, 2]
    assert t.scan_nb < m.scan_nb


def test_run_demo_until_stopped(tmp_path):
    session = new_session()
    stop = gevent.event.Event()
    runner = gevent.spawn(run_demo, session, 0, 3, 0.001, stop_event=stop, data_dir=tmp_path,
                          with_image=False)
    wait_for(lambda: len(get_session_node(session).scan_numbers()) >= 4, timeout=20,
             what="4 scans")
    stop.set()
    scans = runner.get(timeout=20)
    assert len(scans) >= 4 and all(s.end_reason == "SUCCESS" for s in scans)


def test_demo_cli_in_another_process_with_live_image_reads(tmp_path):
    """``beacon-ipy demo`` as a real process; frames read here while its files are open."""
    session = new_session()
    snode = get_session_node(session)
    frames = []

    def on_events(started):
        for event_type, node, data in snode.walk_on_new_events(
                ["scan", "lima"], from_next=True, started_event=started):
            if event_type == "NEW_DATA" and node.type == "lima" and data.start < 2:
                frames.append(node.get_image(data.start))  # SWMR read of an open file
            yield event_type, node, data

    walk = Collector(on_events, stop_at_end=1)
    proc = subprocess.Popen(
        [sys.executable, "-m", "beacon_ipy.cli", "demo", "--session", session, "--scans", "1",
         "--npoints", "5", "--count-time", "0.05", "--data-dir", str(tmp_path), "--no-mca",
         "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "SUCCESS" in out
    walk.wait()
    assert len(frames) == 2 and all(f.shape == (64, 80) and f.sum() > 0 for f in frames)
    assert len(snode.scans()[0].nodes["simu2d:image"]) == 5


def test_demo_cli_refuses_bad_options():
    proc = subprocess.run([sys.executable, "-m", "beacon_ipy.cli", "demo", "--npoints", "0"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--npoints >= 1" in proc.stderr


def test_get_image_is_right_while_a_vds_shares_the_detector_file(tmp_path):
    """Regression: refreshing a dataset shared with an open VDS returned other frames."""
    session = new_session()
    scan = ascan("sx", 0, 1, 5, 0.001, session=session, data_dir=tmp_path, with_mca=False,
                 frames_per_file=3)
    cam = get_session_node(session).get_scan(scan.scan_nb).nodes["simu2d:image"]
    refs = cam.get_references()
    direct = []
    for ref in refs:
        with h5py.File(ref.file, "r") as fh:
            direct.append(fh[ref.path][ref.index])
    layout = h5py.VirtualLayout(shape=(5, 64, 80), dtype=np.uint16)
    for i, ref in enumerate(refs):
        layout[i] = h5py.VirtualSource(ref.file, ref.path, shape=(3, 64, 80))[ref.index]
    with h5py.File(tmp_path / "vds.h5", "w") as fh:
        fh.create_virtual_dataset("images", layout)
    with h5py.File(tmp_path / "vds.h5", "r") as fh:
        vds = fh["images"]
        np.testing.assert_array_equal(vds[4], direct[4])
        np.testing.assert_array_equal(cam.get_image(4), direct[4])
        np.testing.assert_array_equal(vds[4], direct[4])
        np.testing.assert_array_equal(cam.get_image(1), direct[1])
