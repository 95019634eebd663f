"""Crash safety with real processes: ``beacon-ipy save`` killed with SIGKILL, restarted.

The reference is an uninterrupted saver (in this process) on the same session, into
another directory. After every crash and restart, each scan's final file must be
complete and equal, dataset by dataset, to the reference; files that exist without
``.part`` must always be readable.
"""

from __future__ import annotations

import random
import time

import gevent
import h5py
import numpy as np
from peers.saver_helpers import (
    SaverProcess,
    compare_files,
    complete_files,
    is_pending,
    validate_nexus,
)
from peers.scan_helpers import new_session

from beacon_ipy.saving import SaveLayout, SessionSaver
from beacon_ipy.saving.failpoints import ENV as CRASH_ENV
from beacon_ipy.scans import ImageFiles, create_scan
from beacon_ipy.scans import StreamDescription as S

STEPS = ["part_created", "data_written", "before_finalize", "before_rename", "after_rename",
         "before_master_replace", "before_release"]


def assert_complete_files_readable(directory, session) -> None:
    """Every file without .part opens, and is a finished scan; the master opens."""
    for path in complete_files(directory, session):
        with h5py.File(path, "r") as fh:
            (entry,) = fh.values()
            assert "end_reason" in entry and "measurement" in entry, path
    master = SaveLayout(directory, session).master
    if master.exists():
        with h5py.File(master, "r"):
            pass


def assert_same_as_reference(ref_dir, out_dir, session, scan_nbs) -> None:
    ref, out = SaveLayout(ref_dir, session), SaveLayout(out_dir, session)
    for nb in scan_nbs:
        compare_files(ref.scan_file(nb), out.scan_file(nb))
    assert [f.path.name for f in out.saved_files()] == [f.path.name for f in ref.saved_files()]
    assert not list(out.scans_dir.glob("*.part"))
    validate_nexus(out.master)
    with h5py.File(ref.master, "r") as fr, h5py.File(out.master, "r") as fo:
        assert sorted(fo) == sorted(fr)
        for name in fr:
            assert fo.get(name, getlink=True).filename == fr.get(name, getlink=True).filename


def test_sigkill_at_every_step_of_the_write_protocol(tmp_path):
    from beacon_ipy.demo import ascan

    session = new_session()
    ref_dir, out_dir = tmp_path / "ref", tmp_path / "out"
    reference = SessionSaver(session, ref_dir).start()
    reference.wait_ready(10)
    nbs, keys = [], {}
    try:
        # saver k saves scan k-1 (left by the previous crash) then dies at step k of scan k
        for k, step in enumerate([*STEPS, None], start=1):
            env = {CRASH_ENV: f"{step}@{k}"} if step else {}
            proc = SaverProcess(session, out_dir, log=tmp_path / f"saver{k}.log", env=env)
            if k > 1:
                proc.expect("saved", scan_nb=k - 1, timeout=30)
                assert not is_pending(out_dir, session, keys[k - 1])
            else:
                proc.expect("started")
            if step is None:
                assert proc.terminate() == 0
                break
            scan = ascan("sx", 0.0, 1.0, 5, 0.001, session=session, data_dir=tmp_path / "det",
                         frames_per_file=2)
            assert scan.scan_nb == k
            nbs.append(k)
            keys[k] = scan.key
            assert proc.wait(30) == -9, f"{step}: {proc.stderr()[-2000:]}"
            assert_complete_files_readable(out_dir, session)
            assert is_pending(out_dir, session, scan.key), step
        for nb in nbs:
            assert reference.wait_saved(nb, 30).state == "saved"
    finally:
        reference.stop()
    assert_same_as_reference(ref_dir, out_dir, session, nbs)


def _publish(session: str, nb_scans: int, rng: np.random.Generator, det_dir) -> list[int]:
    """Scans with 0d, 1d and 2d data, published at a moderate pace."""
    from beacon_ipy.demo.detector import DATASET_PATH, SimDetector2D

    done = []
    for s in range(nb_scans):
        det = SimDetector2D("cam", (16, 20), frames_per_file=7)
        det.prepare(det_dir / f"s{s}", prefix="cam")
        files = ImageFiles(str((det_dir / f"s{s}" / "cam_%04d.h5").absolute()),
                           DATASET_PATH, 7)
        channels = [S.scalar("axis:x", unit="mm"), S.scalar("ctr:i0"),
                    S.spectrum("mca:spectrum", 2048),
                    S.image("cam:image", (16, 20), "uint16", files=files)]
        info = {"title": f"stress {s}", "npoints": 300,
                "acquisition_chain": {"t": {"master": {"scalars": ["axis:x"]}}}}
        with create_scan(session, info, channels) as scan:
            for k in range(0, 300, 10):
                scan.push({"axis:x": np.arange(k, k + 10.0), "ctr:i0": rng.random(10),
                           "mca:spectrum": rng.random((10, 2048), dtype=np.float32)})
                for _ in range(10):
                    det.save(rng.integers(0, 1000, (16, 20), dtype=np.uint16))
                scan.push_images("cam:image", 10)
                gevent.sleep(0.005)
        det.close()
        done.append(scan.scan_nb)
    return done


def test_sigkill_at_random_moments_then_restart(tmp_path):
    seed = int(time.time())
    rng = random.Random(seed)
    session = new_session()
    ref_dir, out_dir = tmp_path / "ref", tmp_path / "out"
    reference = SessionSaver(session, ref_dir).start()
    reference.wait_ready(10)
    proc = SaverProcess(session, out_dir, log=tmp_path / "saver0.log")
    proc.expect("started")
    publisher = gevent.spawn(_publish, session, 4, np.random.default_rng(seed), tmp_path / "det")
    kills = mid_scan = 0
    try:
        while not publisher.ready() and kills < 4:
            publisher.join(timeout=rng.uniform(0.1, 0.8))  # an arbitrary moment
            proc.kill9()
            kills += 1
            mid_scan += bool(list((out_dir / session).glob("*.part")))
            assert_complete_files_readable(out_dir, session)
            proc = SaverProcess(session, out_dir, log=tmp_path / f"saver{kills}.log")
            proc.expect("started")
        nbs = publisher.get(timeout=60)
        saved = {e["scan_nb"] for e in proc.events if e.get("event") == "saved"}
        while not set(nbs) <= saved | _saved_files(out_dir, session):
            saved.add(proc.expect("saved", timeout=30)["scan_nb"])
        assert proc.terminate() == 0
        for nb in nbs:
            assert reference.wait_saved(nb, 30).state == "saved"
    finally:
        proc.kill9()
        publisher.kill()
        reference.stop()
    assert kills >= 1 and mid_scan >= 1, f"seed {seed}: {kills} kills, {mid_scan} mid-scan"
    assert_same_as_reference(ref_dir, out_dir, session, nbs)
    layout = SaveLayout(out_dir, session)
    with h5py.File(layout.scan_file(nbs[-1]), "r") as fh:
        entry = fh[f"{nbs[-1]}.1"]
        assert entry["measurement/mca"].shape == (300, 2048)
        assert entry["measurement/cam"].is_virtual and entry["measurement/cam"].shape[0] == 300


def _saved_files(directory, session) -> set[int]:
    return {f.scan_nb for f in SaveLayout(directory, session).saved_files()}


def test_cli_stops_cleanly_and_the_next_saver_finishes_the_running_scan(tmp_path):
    session = new_session()
    out = tmp_path / "out"
    before = create_scan(session, {"title": "ended before any saver"}, [S.scalar("x")])
    with before:
        before.push("x", np.arange(3.0))
    proc = SaverProcess(session, out, log=tmp_path / "a.log")
    proc.expect("started")
    running = create_scan(session, {"title": "long"}, [S.scalar("x")]).start()
    running.push("x", np.arange(5.0))
    proc.expect("scan", scan_nb=running.scan_nb)
    assert proc.terminate() == 0  # SIGTERM while the scan runs
    assert proc.events[-1]["event"] == "stopped"
    assert is_pending(out, session, running.key)
    running.push("x", np.arange(5.0, 10.0))
    running.end()
    # a new saver: the running scan was ours (held) -> saved from its beginning;
    # the scan that ended before any saver is not saved without --catch-up
    with SaverProcess(session, out, "--exit-after", "1", log=tmp_path / "b.log") as again:
        again.expect("saved", scan_nb=running.scan_nb)
        assert again.wait(20) == 0
        assert again.events[-1]["event"] == "stopped"
    layout = SaveLayout(out, session)
    with h5py.File(layout.scan_file(running.scan_nb), "r") as fh:
        assert fh[f"{running.scan_nb}.1/measurement/x"][()].tolist() == list(range(10))
    assert not layout.scan_file(before.scan_nb).exists()
    with SaverProcess(session, out, "--catch-up", "--exit-after", "2",
                      log=tmp_path / "c.log") as catch:
        catch.expect("saved", scan_nb=before.scan_nb)
        assert catch.wait(20) == 0
    assert sorted(validate_nexus(layout.master)) == ["1.1", "2.1"]


def test_cli_refuses_a_second_saver_and_shows_progress(tmp_path):
    import sys

    from gevent import subprocess

    session = new_session()
    with SaverProcess(session, tmp_path, log=tmp_path / "first.log") as first:
        first.expect("started")
        second = subprocess.run(
            [sys.executable, "-m", "beacon_ipy.cli", "save", "--session", session, "--dir",
             str(tmp_path)], capture_output=True, text=True, timeout=60)
        assert second.returncode == 2
        assert "already being saved" in second.stderr and str(tmp_path) in second.stderr
        assert first.terminate() == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "beacon_ipy.cli", "save", "--session", session, "--dir",
         str(tmp_path), "--progress", "--exit-after", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("saving session"), (line, proc.stderr.read())
        with create_scan(session, {"title": "bars", "npoints": 20}, [S.scalar("x")]) as s:
            for i in range(20):
                s.push("x", float(i))
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert f"saved scan {s.scan_nb} (SUCCESS)" in out
    assert "20/20" in err  # the scan's tqdm bar reached its end


def test_crash_injection_only_fires_where_asked(monkeypatch):
    from beacon_ipy.saving import failpoints

    monkeypatch.setenv(CRASH_ENV, "nonsense@x, unknown_step, part_created@2")
    failpoints.failpoint("part_created", 1)  # another scan, unknown or malformed: returns
    failpoints.failpoint("unknown", None)
