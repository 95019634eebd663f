"""The NeXus saver in-process: layout, data, metadata, greenlet friendliness, faults.

Real redis-server, real demo acquisitions (frames in real detector files), real files
checked with h5py, silx and nexusformat. Crash tests with real processes are in
test_saving_crash.py.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time

import gevent
import h5py
import numpy as np
import pytest
import redis
from peer import Peer
from peers.saver_helpers import (
    SaverProcess,
    compare_files,
    is_pending,
    load_scan,
    text,
    validate_nexus,
)
from peers.scan_helpers import new_session, wait_for

from beacon_ipy.saving import (
    SaveLayout,
    SaverAlreadyRunningError,
    SessionSaver,
)
from beacon_ipy.saving import scanfile as scanfile_module
from beacon_ipy.scans import ScanHandle, create_scan
from beacon_ipy.scans import StreamDescription as S
from beacon_ipy.scans.bdgaps import data_store, data_url, ensure_initialised


def measurement_by_channel(entry: h5py.Group) -> dict[str, h5py.Dataset]:
    """measurement/ datasets keyed by the channel name they hold (their @long_name)."""
    out = {}
    for ds in entry["measurement"].values():
        name = ds.attrs["long_name"]
        out[name.decode() if isinstance(name, bytes) else name] = ds
    return out


def test_demo_scans_become_valid_nexus_files_holding_what_was_published(tmp_path):
    from beacon_ipy.demo import run_demo

    session = new_session()
    out = tmp_path / "out"
    seen: list[tuple[int, str]] = []
    saver = SessionSaver(session, out, on_progress=lambda s: seen.append((s.scan_nb, s.state)))
    saver.start()
    assert saver.wait_ready(10)
    try:
        # without h5maps: the layout derived from scan_info (tests/test_saving_h5maps.py
        # covers the scans that carry h5maps)
        scans = run_demo(session, scans=3, npoints=9, count_time=0.001,
                         data_dir=tmp_path / "det", frames_per_file=3,
                         producer_options={"h5maps": False})
        statuses = [saver.wait_saved(s.scan_nb, timeout=30) for s in scans]
    finally:
        saver.stop()
    assert [s.state for s in statuses] == ["saved"] * 3
    layout = SaveLayout(out, session)
    for scan, status in zip(scans, statuses, strict=True):
        nb = scan.scan_nb
        path = layout.scan_file(nb)
        assert status.file == str(path) and status.points == 9 and status.npoints == 9
        assert status.key == scan.key and status.incomplete is None
        states = [state for n, state in seen if n == nb]
        assert [s for i, s in enumerate(states) if not i or states[i - 1] != s] == [
            "waiting", "saving", "finalizing", "saved"]
        defaults = validate_nexus(path)
        assert not is_pending(out, session, scan.key)  # released once saved
        bd = load_scan(scan.key)
        handle = ScanHandle(data_store(), bd)
        info = bd.info
        positioners = info["positioners"]
        end_positions = info.get("positioners_end") or positioners["positioners_end"]
        with h5py.File(path, "r") as fh:
            assert fh.attrs["beacon_ipy_scan_uid"] == scan.key
            entry = fh[f"{nb}.1"]
            assert text(entry["title"]) == info["title"]
            assert text(entry["end_reason"]) == "SUCCESS"
            assert text(entry["start_time"]) == info["start_time"]
            assert text(entry["end_time"]) == info["end_time"]
            saved = measurement_by_channel(entry)
            assert set(saved) == set(bd.streams)
            for name, desc in handle.streams.items():
                if not desc.is_image:  # 0d and 1d: the very values published
                    assert not saved[name].is_virtual
                    np.testing.assert_array_equal(saved[name][()], bd.streams[name][:])
                else:  # 2d: a virtual dataset over the detector's files, not a copy
                    assert saved[name].is_virtual and saved[name].shape == (9, 64, 80)
                    files = {v.file_name for v in saved[name].virtual_sources()}
                    assert files == {r.file for r in handle.references(name)}
                    for i in range(9):
                        np.testing.assert_array_equal(saved[name][i],
                                                      handle.get_image(name, i))
            start = positioners["positioners_start"]
            inst = entry["instrument"]
            assert {k: inst["positioners_start"][k][()] for k in start} == start
            assert inst["positioners_end/sx"][()] == end_positions["sx"]
            if info["type"] != "timescan":
                assert inst["sx"].attrs["NX_class"] == "NXpositioner"
                assert inst["sx/value"].attrs["units"] == "mm"
            assert inst["simu2d"].attrs["NX_class"] == "NXdetector"
            assert inst["simu2d/pixel_size_um"][()].tolist() == [55.0, 55.0]  # metadata merged
            assert inst["source/current_mA"][()] == 200.0
            assert inst["mca1/data"].attrs["interpretation"] == "spectrum"
            assert json.loads(text(entry["scan_info/plots"])) == info["plots"]
            assert entry["scan_info/plots"].attrs["encoding"] == "json"
            assert entry["scan_info/npoints"][()] == 9
            plot = entry[defaults[f"{nb}.1"]]
            assert plot.attrs["signal"] == "diode"
            assert list(plot.attrs["auxiliary_signals"]) == ["monitor", "diode_norm"]
            if info["type"] == "amesh":  # a scatter over both master axes
                assert list(plot.attrs["axes"]) == ["sy", "sx"]
            elif info["type"] == "ascan":
                assert list(plot.attrs["axes"]) == ["sx"]
            else:
                assert list(plot.attrs["axes"]) == ["elapsed_time"]
    master = validate_nexus(layout.master)
    assert sorted(master) == [f"{s.scan_nb}.1" for s in scans]
    with h5py.File(layout.master, "r") as fh:
        assert fh.attrs["default"] == f"{scans[-1].scan_nb}.1"
        link = fh.get(f"{scans[0].scan_nb}.1", getlink=True)
        assert isinstance(link, h5py.ExternalLink)
        assert link.filename == f"{session}/scan{scans[0].scan_nb:04d}.h5"  # relative


def test_scan_info_values_hdf5_cannot_hold_are_kept_readably(tmp_path):
    """scan_info as blissdata stores it (JSON): every value lands in the file, readable."""
    session = new_session()
    info = {
        "title": "odd values", "npoints": 3, "nothing": None, "mixed": [1, "a", 2.5],
        "ragged": [[1, 2], [3]], "empty": [], "dicts": [{"a": 1}, {"b": [2]}],
        "arr": np.arange(6, dtype=np.int16).reshape(2, 3), "f32": np.float32(1.5),
        "a/b": 1, "": "empty key", "flag": True, "pair": (1, 2),
        "strings": ["a", "bc"], "nested": {"deep": {"x": [1.0, 2.0]}, "NX_class": "NXnote"},
    }
    with SessionSaver(session, tmp_path) as saver:
        saver.wait_ready(10)
        with create_scan(session, info, [S.scalar("ctr:count", "int32", unit="cts"),
                                         S.spectrum("mca:spec", 8)]) as scan:
            scan.push({"ctr:count": np.arange(3), "mca:spec": np.ones((3, 8))})
        status = saver.wait_saved(scan.scan_nb, timeout=20)
    assert status.state == "saved" and status.incomplete is None
    path = SaveLayout(tmp_path, session).scan_file(scan.scan_nb)
    validate_nexus(path)  # no plot hints: made-up NXdata, valid, with a default
    with h5py.File(path, "r") as fh:
        entry = fh[f"{scan.scan_nb}.1"]
        si = entry["scan_info"]
        for key in ("nothing", "mixed", "ragged", "empty", "dicts"):
            assert si[key].attrs["encoding"] == "json", key
        assert json.loads(text(si["nothing"])) is None
        assert json.loads(text(si["mixed"])) == [1, "a", 2.5]
        assert json.loads(text(si["ragged"])) == [[1, 2], [3]]
        assert json.loads(text(si["empty"])) == []
        assert json.loads(text(si["dicts"])) == [{"a": 1}, {"b": [2]}]
        assert si["arr"][()].tolist() == [[0, 1, 2], [3, 4, 5]]
        assert si["f32"][()] == 1.5
        assert si["a_b"][()] == 1 and si["a_b"].attrs["original_name"] == "a/b"
        assert text(si["_empty"]) == "empty key" and si["_empty"].attrs["original_name"] == ""
        assert si["flag"][()] is np.True_ and si["pair"][()].tolist() == [1, 2]
        assert [s.decode() for s in si["strings"][()]] == ["a", "bc"]
        assert si["nested"].attrs["NX_class"] == "NXnote"
        assert si["nested/deep/x"][()].tolist() == [1.0, 2.0]
        assert entry.attrs["default"] == "data_0d"
        assert entry["data_0d"].attrs["signal"] == "count"
        assert entry["instrument/count/data"].dtype == np.int32
        assert entry["instrument/count/data"].attrs["units"] == "cts"
        assert entry["instrument/mca/data"][()].shape == (3, 8)
        assert "data_1d_mca_spec" in entry
        assert "beacon_ipy_incomplete" not in entry.attrs


def test_hdf5_work_runs_off_the_hub_so_other_greenlets_keep_running(tmp_path, monkeypatch):
    """Every write takes 50 ms of blocking time here; greenlets must tick meanwhile."""
    main_thread = threading.get_ident()
    calls: list[tuple[float, float, int]] = []
    original = scanfile_module.ScanFile.apply

    def slow_apply(self, ops):
        t0 = time.monotonic()
        time.sleep(0.05)  # a slow disk: blocks whichever thread runs it
        result = original(self, ops)
        calls.append((t0, time.monotonic(), threading.get_ident()))
        return result

    monkeypatch.setattr(scanfile_module.ScanFile, "apply", slow_apply)
    ticks: list[float] = []

    def ticker():
        while True:
            ticks.append(time.monotonic())
            gevent.sleep(0.002)

    session = new_session()
    tick = gevent.spawn(ticker)
    try:
        with SessionSaver(session, tmp_path, flush_bytes=1 << 20, flush_interval=0.05) as saver:
            saver.wait_ready(10)
            with create_scan(session, {"title": "spectra", "npoints": 400},
                             [S.spectrum("mca:spectrum", 2048)]) as scan:
                rng = np.random.default_rng(1)
                sent = rng.random((400, 2048), dtype=np.float32)
                for k in range(0, 400, 20):
                    scan.push("mca:spectrum", sent[k:k + 20])
                    gevent.sleep(0.02)  # a scan's pace: several batches get written
            assert saver.wait_saved(scan.scan_nb, timeout=30).state == "saved"
    finally:
        tick.kill()
    assert len(calls) >= 3
    assert all(thread != main_thread for *_, thread in calls)
    for t0, t1, _ in calls:  # the hub kept running during each blocking write
        assert sum(t0 < t < t1 for t in ticks) >= 5, (t0, t1)
    path = SaveLayout(tmp_path, session).scan_file(scan.scan_nb)
    with h5py.File(path, "r") as fh:
        np.testing.assert_array_equal(fh[f"{scan.scan_nb}.1/measurement/mca"][()], sent)


def test_concurrent_scans_and_an_aborted_scan_with_uneven_channels(tmp_path):
    session = new_session()
    hints = [{"kind": "curve-plot", "name": "main", "signal": "det:b", "axes": ["axis:m"],
              "auxiliary_signals": ["det:c"]}]
    chans = [S.scalar("axis:m", unit="mm"), S.scalar("det:b"), S.scalar("det:c")]
    with SessionSaver(session, tmp_path) as saver:
        saver.wait_ready(10)
        a = create_scan(session, {"title": "a", "plots": hints}, chans).start()
        b = create_scan(session, {"title": "b", "plots": hints}, chans).start()
        for i in range(30):  # interleaved, one point at a time
            a.push({"axis:m": i, "det:b": i * 2, "det:c": i * 3})
            b.push({"axis:m": -i, "det:b": -i * 2, "det:c": -i * 3})
        b.push({"axis:m": 99.0})  # the axis got one more point, then the scan is aborted
        b.end("ABORTED")
        a.end()
        sa, sb = saver.wait_saved(a.scan_nb, 20), saver.wait_saved(b.scan_nb, 20)
    assert sa.state == sb.state == "saved"
    layout = SaveLayout(tmp_path, session)
    for scan, sign in ((a, 1), (b, -1)):
        validate_nexus(layout.scan_file(scan.scan_nb))
        with h5py.File(layout.scan_file(scan.scan_nb), "r") as fh:
            entry = fh[f"{scan.scan_nb}.1"]
            assert text(entry["end_reason"]) == ("SUCCESS" if scan is a else "ABORTED")
            axis = entry["measurement/m"][()]
            expected = sign * np.arange(30.0)
            np.testing.assert_array_equal(entry["measurement/b"][()], 2 * expected)
            plot = entry["main"]
            assert plot.attrs["signal"] == "b" and list(plot.attrs["axes"]) == ["m"]
            if scan is b:
                np.testing.assert_array_equal(axis, np.append(expected, 99.0))
                # the plot shows the common length through a view; the data keeps all
                assert plot["m"].is_virtual and plot["m"].shape == (30,)
                np.testing.assert_array_equal(plot["m"][()], expected)
            else:
                np.testing.assert_array_equal(axis, expected)
                assert not plot["m"].is_virtual


def test_a_second_saver_of_the_same_session_and_directory_refuses(tmp_path):
    session = new_session()
    with SessionSaver(session, tmp_path):
        with pytest.raises(SaverAlreadyRunningError) as err:
            SessionSaver(session, tmp_path).start()
        message = str(err.value)
        assert session in message and str(tmp_path) in message
        assert "already being saved" in message and "Stop that one first" in message
        assert "pid" in message
        # another directory, or another session, is fine
        SessionSaver(session, tmp_path / "other").start().stop()
        SessionSaver(new_session(), tmp_path).start().stop()
    SessionSaver(session, tmp_path).start().stop()  # the lock went with the first saver


def test_redis_restarting_mid_scan_loses_nothing(own_redis, tmp_path, monkeypatch):
    """Redis stops and comes back (with its data) while the saver is reading a scan: the
    saver's runner reconnects and the file holds every point, once.

    The scan is published completely first and the saver is slowed down (each batch
    write takes 20 ms) so that the outage falls in the middle of its reading: blissdata's
    producer itself does not survive a restart mid-scan."""
    url = own_redis.url
    session = new_session()
    rng = np.random.default_rng(7)
    sent = rng.random((2000, 64))
    original = scanfile_module.ScanFile.apply

    def slow_apply(self, ops):
        time.sleep(0.02)  # a slow disk (in the threadpool)
        return original(self, ops)

    monkeypatch.setattr(scanfile_module.ScanFile, "apply", slow_apply)
    saver = SessionSaver(session, tmp_path, redis_url=url, flush_bytes=4096,
                         flush_interval=0.05).start()
    try:
        saver.wait_ready(10)
        with create_scan(session, {"title": "restart", "npoints": 2000},
                         [S.scalar("x"), S.spectrum("s", 64, "float64")],
                         redis_url=url) as scan:
            for k in range(0, 2000, 5):
                scan.push({"x": np.arange(k, k + 5.0), "s": sent[k:k + 5]})
        wait_for(lambda: getattr(saver.scan_status(scan.scan_nb), "points", 0) >= 100, 10,
                 "100 points saved")
        redis.Redis.from_url(url).save()  # the server persists its data (RDB)...
        own_redis.stop()  # ...stops (every connection drops) and comes back with it
        assert saver.scan_status(scan.scan_nb).state == "saving"  # mid-scan
        gevent.sleep(0.5)  # an outage of half a second (not a synchronisation)
        own_redis.start()
        status = saver.wait_saved(scan.scan_nb, timeout=60)
        assert status.state == "saved" and status.retries == 0
    finally:
        saver.stop()
    with h5py.File(SaveLayout(tmp_path, session).scan_file(scan.scan_nb), "r") as fh:
        entry = fh[f"{scan.scan_nb}.1"]
        np.testing.assert_array_equal(entry["measurement/x"][()], np.arange(2000.0))
        np.testing.assert_array_equal(entry["measurement/s"][()], sent)
        assert text(entry["end_reason"]) == "SUCCESS"


def test_a_producer_that_dies_gets_its_scan_saved_with_end_reason_died(tmp_path):
    session = new_session()
    with SessionSaver(session, tmp_path) as saver:
        saver.wait_ready(10)
        with Peer("scan_producer.py", session, "0.5", "20") as producer:
            nb = producer.expect("pushed")["scan_nb"]
            wait_for(lambda: getattr(saver.scan_status(nb), "points", 0) == 20, 10,
                     "the 20 points in the file")  # blissdata's producer sends them async
            producer.kill()  # no END: the heartbeat lapses, listeners end it with DIED
        status = saver.wait_saved(nb, timeout=20)
    assert status.state == "saved" and status.end_reason == "DIED"
    path = SaveLayout(tmp_path, session).scan_file(nb)
    validate_nexus(path)
    with h5py.File(path, "r") as fh:
        entry = fh[f"{nb}.1"]
        assert text(entry["end_reason"]) == "DIED"
        assert entry["measurement/counter"][()].tolist() == list(map(float, range(20)))
        assert entry["measurement/spectrum"].shape == (20, 16)


def test_redis_restarting_without_persistence(own_redis, tmp_path):
    """The running scan's data is gone: it fails clearly and its partial file is kept.
    The scan counter restarts at 1: the new scan 1 goes next to the old one, not over it."""
    url = own_redis.url
    session = new_session()
    layout = SaveLayout(tmp_path, session)
    saver = SessionSaver(session, tmp_path, redis_url=url).start()
    try:
        saver.wait_ready(10)
        with create_scan(session, {"title": "first"}, [S.scalar("x")],
                         redis_url=url) as first:
            first.push("x", np.arange(3.0))
        assert saver.wait_saved(first.scan_nb, 20).state == "saved"
        lost = create_scan(session, {"title": "lost"}, [S.scalar("x")], redis_url=url,
                           heartbeat=60).start()
        lost.push("x", np.arange(10.0))
        wait_for(lambda: getattr(saver.scan_status(lost.scan_nb), "points", 0) == 10, 10,
                 "10 points written")
        own_redis.restart()  # no persistence: every key is gone
        ensure_initialised(data_url(url))  # an empty server, made ready for blissdata again
        status = saver.wait_saved(lost.scan_nb, timeout=20)
        assert status.state == "failed" and "no longer in Redis" in status.error
        assert str(layout.scan_file(lost.scan_nb)) + ".part" in status.error
        with create_scan(session, {"title": "again"}, [S.scalar("x")],
                         redis_url=url) as again:
            again.push("x", np.arange(4.0))
        assert again.scan_nb == first.scan_nb == 1  # the counter was reset
        status = wait_for(lambda: (s := saver.scan_status(1)) and s.title == "again"
                          and s.done and s, 20, "the new scan 1 saved")
        assert status.state == "saved" and status.file == str(layout.scan_file(1, 2))
    finally:
        saver.stop()
        with contextlib.suppress(Exception):
            lost.end("ABORTED")  # its producer threads would keep this process alive
    with h5py.File(layout.scan_file(1), "r") as fh:
        assert text(fh["1.1/title"]) == "first"
    with h5py.File(layout.scan_file(1, 2), "r") as fh:
        assert text(fh["1.1/title"]) == "again"
    with h5py.File(layout.part_file(layout.scan_file(lost.scan_nb)), "r") as fh:
        assert fh[f"{lost.scan_nb}.1/measurement/x"][()].tolist() == list(map(float, range(10)))
    assert sorted(validate_nexus(layout.master)) == ["1.1", "1.1_2"]


def test_compare_files_sees_differences(tmp_path):
    """The comparison used by the crash tests is not vacuous."""
    for name, value in (("a.h5", 1.0), ("b.h5", 1.0), ("c.h5", 2.0)):
        with h5py.File(tmp_path / name, "w") as fh:
            fh["g/x"] = np.array([0.0, value, np.nan])
            fh["g"].attrs["k"] = "v"
    compare_files(tmp_path / "a.h5", tmp_path / "b.h5")
    with pytest.raises(AssertionError):
        compare_files(tmp_path / "a.h5", tmp_path / "c.h5")


def test_points_trimmed_before_they_were_saved_give_an_entry_marked_incomplete(tmp_path):
    """blissdata's own memory tracker trims the oldest data of a scan no saver protected;
    a saver catching up saves what is left, full length, and says what is missing."""
    from blissdata.redis_engine.memory_tracker import MemoryTracker, NoFreeableMemoryError

    session = new_session()
    store = data_store()
    tracker = MemoryTracker(store, inactive_scan_deletion=3600, closed_scan_deletion=3600,
                            cleaning_time_slice=50)
    n = 1000  # one point per stream entry: Redis trims whole nodes of 100 entries
    with create_scan(session, {"title": "trimmed", "npoints": n},
                     [S.scalar("x"), S.spectrum("mca:s", 4)]) as scan:
        for k in range(n):
            scan.push({"x": float(k), "mca:s": np.full(4, k, float)})
            if k % 100 == 99:
                tracker.update()  # the tracker journals each stream's progress, in time
                gevent.sleep(0.01)
    x = load_scan(scan.key).streams["x"]

    def trimmed() -> bool:
        tracker.update()
        with contextlib.suppress(NoFreeableMemoryError):
            tracker.reclaim_memory(protected_history=0)  # the oldest half of the history
        try:
            x[0]
        except IndexError:
            return True  # trimmed: nobody held the scan
        return False

    wait_for(trimmed, 10, "the tracker to trim the scan's oldest points")
    with SessionSaver(session, tmp_path, catch_up=True) as saver:
        status = saver.wait_saved(scan.scan_nb, timeout=30)
    assert status.state == "saved"
    assert "INCOMPLETE" in status.incomplete and "x: points 0.." in status.incomplete
    path = SaveLayout(tmp_path, session).scan_file(scan.scan_nb)
    validate_nexus(path)
    with h5py.File(path, "r") as fh:
        entry = fh[f"{scan.scan_nb}.1"]
        assert entry.attrs["beacon_ipy_incomplete"]
        notes = [n.decode() for n in entry["saving_notes"][()]]
        assert any("trimmed from Redis" in n and "'x'" in n for n in notes), notes
        saved = entry["measurement/x"]
        assert saved.shape == (n,)  # never silently short
        (lost_start, lost_stop), = saved.attrs["lost_points"].tolist()
        assert lost_start == 0 < lost_stop <= n
        assert np.isnan(saved[:lost_stop]).all()
        np.testing.assert_array_equal(saved[lost_stop:], np.arange(lost_stop, float(n)))
        spectra = entry["measurement/mca"]
        assert spectra.shape == (n, 4) and "lost_points" in spectra.attrs


def test_stop_keeps_the_markers_of_unfinished_scans_unless_told_to_release_them(tmp_path):
    session = new_session()
    kept = create_scan(session, {"title": "kept"}, [S.scalar("x")]).start()
    try:
        saver = SessionSaver(session, tmp_path).start()
        assert saver.wait_ready(10)
        kept.push("x", np.arange(3.0))
        wait_for(lambda: getattr(saver.scan_status(kept.scan_nb), "points", 0) == 3, 10,
                 "3 points written")
        saver.stop()  # the scan still runs: its marker stays for the next saver
        assert saver.scan_status(kept.scan_nb).state == "stopped"
        assert is_pending(tmp_path, session, kept.key)
        again = SessionSaver(session, tmp_path).start()
        assert again.wait_ready(10)
        wait_for(lambda: getattr(again.scan_status(kept.scan_nb), "state", "") == "saving",
                 10, "the next saver to take the scan on")
        again.stop(release_holds=True)
        assert not is_pending(tmp_path, session, kept.key)
    finally:
        kept.end()
    # nothing protects it any more and no saver records it: a new saver leaves it alone
    with SessionSaver(session, tmp_path) as last:
        assert last.wait_ready(10)
        with create_scan(session, {"title": "new"}, [S.scalar("x")]) as new:
            new.push("x", np.arange(2.0))
        assert last.wait_saved(new.scan_nb, 20).state == "saved"
        assert last.scan_status(kept.scan_nb) is None


def test_stop_right_after_a_scan_ended_finishes_it(tmp_path):
    """The notebook's sequence: the scan ends, then ``%savescans --stop`` at once, before
    the saver has read the end: the ended scan is finished, not left pending."""
    session = new_session()
    scan = create_scan(session, {"title": "ends just before the stop"}, [S.scalar("x")]).start()
    saver = SessionSaver(session, tmp_path).start()
    assert saver.wait_ready(10)
    scan.push("x", np.arange(3.0))
    wait_for(lambda: getattr(saver.scan_status(scan.scan_nb), "points", 0) == 3, 10,
             "3 points written")
    scan.push("x", np.arange(3.0, 10.0))
    scan.end()  # no yield since: the saver has not read the last points nor the end
    assert saver.scan_status(scan.scan_nb).state == "saving"
    saver.stop()
    status = saver.scan_status(scan.scan_nb)
    assert status.state == "saved", (status.state, status.error)
    assert not is_pending(tmp_path, session, scan.key)
    with h5py.File(status.file, "r") as fh:
        assert fh[f"{scan.scan_nb}.1/measurement/x"][()].tolist() == list(range(10))


def test_compression_keeps_every_value_and_the_layout_and_shrinks_the_files(tmp_path):
    """``--compression gzip`` (CLI) against the default (Python API), on one scan:
    the same tree, attributes and values; gzip + shuffle on the streamed datasets."""
    session = new_session()
    plain, packed = tmp_path / "plain", tmp_path / "gzip"
    with pytest.raises(ValueError, match="compression must be one of None, 'gzip', 'lzf'"):
        SessionSaver(session, plain, compression="zip")
    cli = SaverProcess(session, packed, "--compression", "gzip", "--exit-after", "1",
                       log=tmp_path / "cli.log")
    cli.expect("started")
    with SessionSaver(session, plain) as saver:
        assert saver.wait_ready(30)
        spectra = np.zeros((400, 1024), dtype="float32")  # mostly zeros, as MCA spectra
        spectra[:, 500:520] = np.arange(400, dtype="float32")[:, None]
        with create_scan(session, {"type": "timescan"},
                         [S.scalar("counter"), S.spectrum("mca", 1024, "float32")]) as scan:
            for k in range(0, 400, 50):
                scan.push({"counter": np.arange(k, k + 50, dtype=float),
                           "mca": spectra[k:k + 50]})
        status = saver.wait_saved(scan.scan_nb, timeout=60)
        assert status.state == "saved", status.error
    cli.expect("saved", scan_nb=scan.scan_nb, timeout=60)
    assert cli.wait(20) == 0
    plain_file = SaveLayout(plain, session).scan_file(scan.scan_nb)
    packed_file = SaveLayout(packed, session).scan_file(scan.scan_nb)
    compare_files(plain_file, packed_file)
    with h5py.File(packed_file, "r") as fh:
        streamed = measurement_by_channel(fh[f"{scan.scan_nb}.1"])
        assert {ds.compression for ds in streamed.values()} == {"gzip"}
        assert all(ds.shuffle for ds in streamed.values())
        np.testing.assert_array_equal(streamed["mca"][()], spectra)
    assert packed_file.stat().st_size < plain_file.stat().st_size / 3
