"""Interoperability with blissdata 2.x in SEPARATE processes, on the real module-enabled Redis.

- a plain blissdata producer -> the seed API sees every scan, stream and point (0d, 1d,
  images read back from the producer's files);
- beacon-ipy's demo -> a plain blissdata consumer reads every stream equal;
- 40 scans created back to back are all seen with all their streams (the load race);
- BLISS's own writer (``blisswriter run URL``, its own virtualenv) saves beacon-ipy scans.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import gevent
import h5py
import numpy as np
import pytest
from gevent import subprocess
from peers.scan_helpers import Collector, new_session, wait_for

from beacon_ipy import get_session_node
from beacon_ipy.demo import run_demo
from beacon_ipy.scans import ScanConsumer, ScanRunner, bdgaps, create_scan

PEERS = Path(__file__).parent / "peers"
STREAMS = {"axis:mot", "diode:counts", "mca:spectrum", "cam:image"}


def blissdata_producer(session: str, nscans: int, npoints: int, data_dir: Path):
    bdgaps.data_store()  # the session's server, initialised for blissdata
    return subprocess.Popen([sys.executable, str(PEERS / "blissdata_producer.py"),
                             bdgaps.data_url(), session, str(nscans), str(npoints),
                             str(data_dir)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def test_seed_api_sees_every_scan_stream_and_point_of_a_blissdata_producer(tmp_path):
    session = new_session()
    walk = Collector(lambda s: get_session_node(session).walk_on_new_events(
        from_next=True, started_event=s), stop_at_end=2)
    proc = blissdata_producer(session, 2, 7, tmp_path)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    events = walk.wait(30)
    scans = [e[1] for e in events if e[0] == "NEW_NODE" and e[1].type == "scan"]
    assert [s.scan_nb for s in scans] == [1, 2] and scans[0].name == "1_ascan"
    for scan in scans:
        mine = [e for e in events if (e[1] if e[1].type == "scan" else e[1].scan).key
                == scan.key]
        nodes = {e[1].name: e[1] for e in mine if e[0] == "NEW_NODE" and e[1].type != "scan"}
        assert set(nodes) == STREAMS
        assert nodes["cam:image"].type == "lima" and nodes["mca:spectrum"].type == "channel"
        assert nodes["axis:mot"].unit == "mm" and nodes["axis:mot"].display_name == "mot"
        data = {}
        for t, node, d in mine:
            if t == "NEW_DATA":
                data.setdefault(node.name, []).append(d)
        i = np.arange(7)
        np.testing.assert_array_equal(np.concatenate([d.data for d in data["axis:mot"]]),
                                      0.5 * i)
        counts = np.concatenate([d.data for d in data["diode:counts"]])
        assert counts.dtype == np.int32 and counts.tolist() == (3 * i).tolist()
        mca = np.concatenate([d.data for d in data["mca:spectrum"]])
        assert mca.shape == (7, 8) and mca[:, 5].tolist() == i.tolist()
        refs = [r for d in data["cam:image"] for r in d.references]
        assert [(Path(r.file).name, r.index) for r in refs] == [
            (f"cam_{k // 3:04d}.h5", k % 3) for k in range(7)]
        cam = nodes["cam:image"]
        assert [int(cam.get_image(k)[0, 0]) for k in range(7)] == list(range(7))
        end = mine[-1]
        assert end[0] == "END_SCAN" and end[2].reason == "SUCCESS"
        assert end[2].counts == dict.fromkeys(STREAMS, 7)
        assert end[1].info["positioners_end"] == {"mot": 3.0}


def test_a_blissdata_consumer_reads_every_stream_of_the_demo_equal(tmp_path):
    session = new_session()
    bdgaps.data_store()
    proc = subprocess.Popen([sys.executable, str(PEERS / "blissdata_consumer.py"),
                             bdgaps.data_url(), session, "2"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        with gevent.Timeout(30, AssertionError("consumer never got ready")):
            assert json.loads(proc.stdout.readline()) == {"ready": True}
        scans = run_demo(session, scans=2, npoints=5, count_time=0.002, data_dir=tmp_path,
                         frames_per_file=2)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    results = [json.loads(line) for line in out.splitlines()]
    snode = get_session_node(session)
    assert [r["number"] for r in results] == [s.scan_nb for s in scans]
    for result in results:
        node = snode.get_scan(result["number"])
        assert result["title"] == node.info["title"] and result["end_reason"] == "SUCCESS"
        assert set(result["streams"]) == set(node.nodes)
        for name, channel in node.nodes.items():
            got = result["streams"][name]
            if channel.type == "lima":
                assert got["frames"] == 5
                assert got["sums"] == [int(channel.get_image(k).sum()) for k in range(5)]
            else:
                np.testing.assert_array_equal(np.asarray(got, dtype=channel.dtype),
                                              channel.get())


class Ends(ScanConsumer):
    def __init__(self):
        self.streams: dict[int, set[str]] = {}
        self.points: dict[int, int] = {}
        self.ends: list[int] = []

    def new_stream(self, scan, stream):
        self.streams.setdefault(scan.number, set()).add(stream.name)

    def new_data(self, scan, stream, block):
        self.points[scan.number] = self.points.get(scan.number, 0) + len(block)

    def end_scan(self, scan, end):
        self.ends.append(scan.number)


def test_forty_scans_created_back_to_back_are_all_seen_with_all_streams(tmp_path):
    session = new_session()
    consumer = Ends()
    started = gevent.event.Event()
    runner = ScanRunner(consumer, session=session, started_event=started)
    glet = runner.spawn()
    assert started.wait(10)
    proc = blissdata_producer(session, 40, 3, tmp_path)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    wait_for(lambda: len(consumer.ends) == 40, timeout=30, what="40 ends")
    runner.stop()
    glet.get(timeout=5)
    assert consumer.ends == list(range(1, 41))
    assert all(consumer.streams[n] == STREAMS for n in range(1, 41))
    assert all(consumer.points[n] == 4 * 3 for n in range(1, 41))


@pytest.mark.slow
def test_blisswriter_saves_beacon_ipy_scans(tmp_path):
    """BLISS's own NeXus writer, in its own virtualenv, saves the demo's scans."""
    from blisswriter_env import blisswriter_python

    python = blisswriter_python()
    session = new_session()
    bdgaps.data_store()
    writer = subprocess.Popen([python, "-c", "from blisswriter.cli import cli; cli()", "run",
                               bdgaps.data_url(), "--log-level", "INFO"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log: list[str] = []
    reader = gevent.spawn(lambda: [log.append(line) for line in writer.stdout])
    try:
        # The writer follows scans created after it started, and says nothing when ready:
        # publish probe scans (no path: "not to be saved") until it logs one of them.
        def probed():
            with create_scan(session + "probe", {"type": "probe"}) as probe:
                pass
            return wait_for(lambda: any(probe.key in line for line in log) or None,
                            timeout=1.0, what="probe") if writer.poll() is None else True

        def writer_ready():
            try:
                return probed()
            except AssertionError:
                return False

        wait_for(writer_ready, timeout=60, what="blisswriter to follow new scans")
        assert writer.poll() is None, "".join(log)
        scans = run_demo(session, scans=2, npoints=4, count_time=0.002, data_dir=tmp_path,
                         frames_per_file=3)
        path = Path(get_session_node(session).get_scan(scans[0].scan_nb).handle.path)
        assert path.parent == tmp_path / session

        def saved():
            try:
                with h5py.File(path, "r", locking=False) as fh:
                    return all(f"{s.scan_nb}.1/end_reason" in fh for s in scans)
            except OSError:
                return False

        wait_for(saved, timeout=60, what="blisswriter's file")
    finally:
        writer.terminate()
        writer.wait(10)
        reader.join(5)
    snode = get_session_node(session)
    with h5py.File(path, "r") as fh:
        assert fh.attrs["default"] == f"{scans[-1].scan_nb}.1"
        for scan in scans:
            entry = fh[f"{scan.scan_nb}.1"]
            node = snode.get_scan(scan.scan_nb)
            assert entry["title"][()].decode() == node.info["title"]
            assert entry["end_reason"][()].decode() == "SUCCESS"
            diode = entry["measurement/simu_diode"][()]
            np.testing.assert_array_equal(diode, node.nodes["simu:diode"].get())
            images = entry["measurement/simu2d_image"]
            assert images.shape == (4, 64, 80)
            np.testing.assert_array_equal(images[3], node.nodes["simu2d:image"].get_image(3))
            assert entry["plotselect"].attrs["signal"] == "signal"
