"""A REAL BLISS 2.4 ``ascan`` (library mode, real beacon-server) followed live by beacon-ipy.

beacon-ipy gets only ``BEACON_HOST``: it asks Beacon for the data Redis, follows the session
with the seed's API while BLISS scans, and its data equal BLISS's own reading of the scan.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import gevent
import pytest
from gevent import subprocess

PEERS = Path(__file__).parent / "peers"


@pytest.mark.bliss
@pytest.mark.slow
def test_beacon_ipy_follows_a_real_bliss_ascan_live(beacon_server):
    env = beacon_server.env()
    assert "BEACON_REDIS_URL" not in env and env["BEACON_HOST"] == beacon_server.beacon_host
    follower = subprocess.Popen([sys.executable, str(PEERS / "seed_follower.py"), "demo", "1"],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    try:
        with gevent.Timeout(60, AssertionError("follower never got ready")):
            line = follower.stdout.readline()
        assert json.loads(line or "{}") == {"ready": True}, follower.stderr.read()
        bliss = subprocess.run([beacon_server.bliss_python, str(PEERS / "bliss_ascan.py"), "20"],
                               env=env, capture_output=True, text=True, timeout=300)
        assert bliss.returncode == 0, bliss.stderr[-3000:]
        out, err = follower.communicate(timeout=60)
    finally:
        if follower.poll() is None:
            follower.kill()
    assert follower.returncode == 0, err
    theirs = json.loads(bliss.stdout.strip().splitlines()[-1])
    ours = json.loads(out.strip().splitlines()[-1])
    assert ours["number"] == theirs["scan_number"] and ours["reason"] == "SUCCESS"
    assert ours["title"].startswith("ascan roby 0.0000 1.0000 20")
    assert set(ours["data"]) == set(theirs["data"])  # every stream, axis and counters
    for name, values in theirs["data"].items():
        assert len(values) == 21, name
        assert ours["data"][name] == pytest.approx(values), name


@pytest.mark.bliss
@pytest.mark.slow
def test_the_seed_external_saving_example_saves_a_real_bliss_ascan(beacon_server, tmp_path):
    import h5py

    example = Path(__file__).parent.parent / "examples" / "external_saving.py"
    output = tmp_path / "saved.h5"
    env = beacon_server.env()
    saver = subprocess.Popen([sys.executable, str(example), "--session", "demo", "--output",
                              str(output), "--scans", "1"], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        with gevent.Timeout(60, AssertionError("example never started listening")):
            line = saver.stdout.readline()
        assert line.startswith("listening"), saver.stderr.read()
        bliss = subprocess.run([beacon_server.bliss_python, str(PEERS / "bliss_ascan.py"), "8"],
                               env=env, capture_output=True, text=True, timeout=300)
        assert bliss.returncode == 0, bliss.stderr[-3000:]
        out, err = saver.communicate(timeout=60)
    finally:
        if saver.poll() is None:
            saver.kill()
    assert saver.returncode == 0, err
    theirs = json.loads(bliss.stdout.strip().splitlines()[-1])
    assert "saved scan" in out
    with h5py.File(output, "r") as fh:
        entry = fh[f"{theirs['scan_number']}.1"]
        assert entry["end_reason"][()].decode() == "SUCCESS"
        for name, values in theirs["data"].items():
            assert entry["measurement"][name][()].tolist() == pytest.approx(values), name
        assert "roby" in entry["instrument/positioners_start"]
