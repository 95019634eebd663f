"""examples/external_saving.py run as a real listener process against demo scans."""

from __future__ import annotations

import sys
from pathlib import Path

import gevent
import h5py
import numpy as np
from gevent import subprocess
from peers.scan_helpers import new_session

from beacon_ipy import get_session_node
from beacon_ipy.demo import run_demo

EXAMPLE = Path(__file__).parent.parent / "examples" / "external_saving.py"


def test_external_saving_example_saves_what_the_demo_published(tmp_path):
    session = new_session()
    output = tmp_path / "saved.h5"
    proc = subprocess.Popen([sys.executable, str(EXAMPLE), "--session", session, "--output",
                             str(output), "--scans", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with gevent.Timeout(20, AssertionError("example never started listening")):
            line = proc.stdout.readline()
        assert line.startswith("listening"), (line, proc.stderr.read())
        scans = run_demo(session, scans=2, npoints=5, count_time=0.001,
                         data_dir=tmp_path / "det", frames_per_file=3)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert out.count("saved scan") == 2
    snode = get_session_node(session)
    with h5py.File(output, "r") as fh:
        assert sorted(fh) == [f"{s.scan_nb}.1" for s in scans]
        for scan in scans:
            entry = fh[f"{scan.scan_nb}.1"]
            node = snode.get_scan(scan.scan_nb)
            assert entry["title"][()].decode() == node.info["title"]
            assert entry["end_reason"][()].decode() == "SUCCESS"
            for name, channel in node.nodes.items():
                saved = entry["measurement"][name]
                if channel.type == "channel":
                    np.testing.assert_array_equal(saved[()], channel.get())
                else:  # images resolved by reference (virtual dataset over detector files)
                    assert saved.is_virtual and saved.shape == (5, 64, 80)
                    np.testing.assert_array_equal(saved[4], channel.get_image(4))
            start = node.info["positioners"]["positioners_start"]
            assert entry["instrument/positioners_start/sx"][()] == start["sx"]
            assert entry["scan_info/npoints"][()] == 5
