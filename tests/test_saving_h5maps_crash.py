"""Crash safety in the h5maps layout: a saver process SIGKILLed at random moments while
scans that carry h5maps run (0d, spectra, detector images), restarted each time, ends with
files identical to those of a saver that was never interrupted (the step-by-step SIGKILL
test in test_saving_crash.py runs on demo ascans, which carry h5maps too)."""

from __future__ import annotations

import random
import time

import gevent
import h5py
import numpy as np
from peers.saver_helpers import SaverProcess, compare_files, validate_nexus
from peers.scan_helpers import new_session

from beacon_ipy.saving import SaveLayout, SessionSaver
from beacon_ipy.scans import ImageFiles, create_scan
from beacon_ipy.scans import StreamDescription as S

NPOINTS = 200


def publish(session: str, nb_scans: int, rng: np.random.Generator, root) -> list[int]:
    """Scans with a data file path (so with h5maps), 0d, 1d and 2d data, at a moderate pace."""
    from beacon_ipy.demo.detector import DATASET_PATH, SimDetector2D

    done = []
    for s in range(nb_scans):
        det = SimDetector2D("cam", (16, 20), frames_per_file=7)
        det.prepare(root / "det" / f"s{s}", prefix="cam")
        files = ImageFiles(str((root / "det" / f"s{s}" / "cam_%04d.h5").absolute()),
                           DATASET_PATH, 7)
        channels = [S.scalar("axis:x", unit="mm"), S.scalar("ctr:i0"),
                    S.spectrum("mca:spectrum", 1024),
                    S.image("cam:image", (16, 20), "uint16", files=files)]
        info = {"title": f"h5maps stress {s}", "npoints": NPOINTS,
                "acquisition_chain": {"t": {"master": {"scalars": ["axis:x"]},
                                            "scalars": ["ctr:i0"]}}}
        with create_scan(session, info, channels, path=root / "bliss" / "data.h5") as scan:
            for k in range(0, NPOINTS, 10):
                scan.push({"axis:x": np.arange(k, k + 10.0), "ctr:i0": rng.random(10),
                           "mca:spectrum": rng.random((10, 1024), dtype=np.float32)})
                for _ in range(10):
                    det.save(rng.integers(0, 1000, (16, 20), dtype=np.uint16))
                scan.push_images("cam:image", 10)
                gevent.sleep(0.005)
        assert "h5maps" in scan.scan_info
        det.close()
        done.append(scan.scan_nb)
    return done


def test_sigkill_at_random_moments_gives_the_same_h5maps_files(tmp_path):
    seed = int(time.time())
    rng = random.Random(seed)
    session = new_session()
    ref_dir, out_dir = tmp_path / "ref", tmp_path / "out"
    reference = SessionSaver(session, ref_dir).start()
    assert reference.wait_ready(10)
    proc = SaverProcess(session, out_dir, log=tmp_path / "saver0.log")
    proc.expect("started")
    publisher = gevent.spawn(publish, session, 3, np.random.default_rng(seed), tmp_path)
    kills = 0
    try:
        while not publisher.ready() and kills < 4:
            publisher.join(timeout=rng.uniform(0.1, 0.6))  # an arbitrary moment
            proc.kill9()
            kills += 1
            proc = SaverProcess(session, out_dir, log=tmp_path / f"saver{kills}.log")
            proc.expect("started")
        nbs = publisher.get(timeout=60)
        layout = SaveLayout(out_dir, session)
        saved = {e["scan_nb"] for e in proc.events if e.get("event") == "saved"}
        while not set(nbs) <= saved | {f.scan_nb for f in layout.saved_files()}:
            saved.add(proc.expect("saved", timeout=30)["scan_nb"])
        assert proc.terminate() == 0
        for nb in nbs:
            assert reference.wait_saved(nb, 30).state == "saved"
    finally:
        proc.kill9()
        publisher.kill()
        reference.stop()
    assert kills >= 1, f"seed {seed}"
    ref = SaveLayout(ref_dir, session)
    for nb in nbs:
        compare_files(ref.scan_file(nb), layout.scan_file(nb))
        assert validate_nexus(layout.scan_file(nb)) == {f"{nb}.1": "plotselect"}
        with h5py.File(layout.scan_file(nb), "r") as fh:
            entry = fh[f"{nb}.1"]
            assert entry.get("measurement/mca_spectrum", getlink=True).path == \
                f"/{nb}.1/instrument/mca/spectrum"  # the map's layout
            assert entry["instrument/mca/spectrum"].shape == (NPOINTS, 1024)
            assert entry["instrument/cam/image"].is_virtual
            assert entry["instrument/cam/image"].shape == (NPOINTS, 16, 20)
    assert [f.path.name for f in layout.saved_files()] == [f.path.name
                                                           for f in ref.saved_files()]
    assert not list(layout.scans_dir.glob("*.part"))
