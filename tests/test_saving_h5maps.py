"""The saver follows a scan's ``h5maps`` (every ``blissdata.h5map`` item kind), and falls
back to the scan_info layout, with a note, when the map does not hold the scan's entry.

Real Redis, real blissdata producer (beacon-ipy's), real HDF5; literal items are checked
against what blisswriter's own code path (``create_dataset(data=item.decode())``) gives.
"""

from __future__ import annotations

import base64

import h5py
import numpy as np
from peers.scan_helpers import new_session

from beacon_ipy.saving import SaveLayout, SessionSaver
from beacon_ipy.scans import StreamDescription as S
from beacon_ipy.scans import create_scan


def stream(name: str, **attrs) -> dict:
    value = {"type": "stream", "stream": name}
    return {"type": "dataset", "attributes": attrs, "value": value} if attrs else value


def custom_map(entry: str, ext_file: str, raw_file: str, vds_file: str) -> dict:
    g = lambda cls, children, **a: {"type": "group",  # noqa: E731
                                     "attributes": {"NX_class": cls, **a},
                                     "children": children}
    return g("NXroot", {entry: g("NXentry", {
        "title": "custom map",
        "count": {"type": "inline", "dtype": "int16", "value": 7},
        "nan": {"type": "inline", "dtype": "float32", "value": "nan"},
        "blob": {"type": "inline_b64", "dtype": "<u2", "shape": [2, 2],
                 "value": base64.b64encode(np.arange(4, dtype="<u2").tobytes()).decode()},
        "table": {"type": "compound", "columns": [["a", [1, 2]], ["b", [0.5, 1.5]]]},
        "names": ["x", "yy"],
        "instrument": g("NXinstrument", {
            "mot": g("NXpositioner", {"value": stream("axis:mot", units="mm")}),
            "det": g("NXdetector", {"data": stream("det:counts"),
                                    "again": stream("det:counts"),
                                    "never": stream("det:silent")}),
        }),
        "measurement": g("NXcollection", {
            "mot": {"type": "soft_link", "target_path": f"/{entry}/instrument/mot/value"},
            "counts": {"type": "soft_link", "target_path": f"/{entry}/instrument/det/data"},
            "silent": {"type": "soft_link", "target_path": f"/{entry}/instrument/det/never"},
        }),
        "outside": {"type": "external_link", "target_file": ext_file, "target_path": "/x"},
        "raw": {"type": "external_binary_dataset", "dtype": "<i4", "shape": [3],
                "files": [{"name": raw_file, "offset": 0, "size": 12}]},
        "every_other": {"type": "virtual_dataset", "dtype": "<f8", "shape": [3],
                        "attributes": {"note": "VDS"},
                        "virtual_sources": [{
                            "vspace": {"start": [0], "count": [3]},
                            "src_file": vds_file, "src_dataset": "/v",
                            "src_space": {"start": [0], "stride": [2], "count": [3]}}]},
        "plot": g("NXdata", {"signal": {"type": "soft_link",
                                        "target_path": f"/{entry}/instrument/det/data"}},
                  signal="signal"),
    }, default="plot")}, default=entry)


def save_one(tmp_path, info: dict, number: int = 1):
    session = new_session()
    out = tmp_path / "out"
    streams = [S.scalar("axis:mot", "float64", unit="mm"), S.scalar("det:counts", "int32"),
               S.scalar("det:silent", "float64"), S.scalar("det:extra", "float64")]
    saver = SessionSaver(session, out).start()
    assert saver.wait_ready(10)
    try:
        with create_scan(session, info, streams, number=number, h5maps=False) as scan:
            scan.push("axis:mot", np.arange(5) * 0.5)
            scan.push("det:counts", np.arange(5, dtype=np.int32) * 3)
            scan.push("det:extra", np.ones(5))
        status = saver.wait_saved(number, timeout=30)
    finally:
        saver.stop()
    assert status.state == "saved", status.error
    return SaveLayout(out, session).scan_file(number)


def test_every_h5map_item_kind_is_written_as_mapped(tmp_path):
    with h5py.File(tmp_path / "ext.h5", "w") as fh:
        fh["x"] = np.arange(3.0)
    with h5py.File(tmp_path / "vds.h5", "w") as fh:
        fh["v"] = np.arange(6.0)
    (tmp_path / "raw.bin").write_bytes(np.array([4, 5, 6], dtype="<i4").tobytes())
    tree = custom_map("1.1", str(tmp_path / "ext.h5"), str(tmp_path / "raw.bin"),
                      str(tmp_path / "vds.h5"))
    path = save_one(tmp_path, {"title": "custom map", "h5maps": {"/any/where.h5": tree}})
    from blissdata.h5map import DataItem

    with h5py.File(path, "r") as fh, h5py.File(tmp_path / "ref.h5", "w") as ref:
        assert fh.attrs["NX_class"] == "NXroot" and fh.attrs["default"] == "1.1"
        entry = fh["1.1"]
        assert entry.attrs["default"] == "plot"
        for key in ("title", "count", "nan", "blob", "table", "names"):
            raw = tree["children"]["1.1"]["children"][key]
            # what blisswriter 3.0's save_dataset writes for the same item
            expected = ref.create_dataset(key, data=DataItem.validate_python(raw).decode())
            assert (entry[key].dtype, entry[key].shape) == (expected.dtype, expected.shape)
            assert np.array_equal(entry[key][()], expected[()]) or key == "nan", key
        assert entry["count"][()] == 7 and entry["count"].dtype == np.int16
        assert np.isnan(entry["nan"][()]) and entry["nan"].dtype == np.float32
        np.testing.assert_array_equal(entry["blob"][()], [[0, 1], [2, 3]])
        assert entry["table"]["b"].tolist() == [0.5, 1.5]
        assert [v.decode() for v in entry["names"][()]] == ["x", "yy"]
        mot = entry["instrument/mot/value"]
        np.testing.assert_array_equal(mot[()], np.arange(5) * 0.5)
        assert dict(mot.attrs) == {"units": "mm"}  # the map's attributes only
        det = entry["instrument/det"]
        assert det["data"].dtype == np.int32 and det["data"][()].tolist() == [0, 3, 6, 9, 12]
        assert det["again"] == det["data"]  # a stream mapped twice: one dataset, hard linked
        assert "never" not in det  # no point: no dataset, as blisswriter
        links = {n: entry["measurement"].get(n, getlink=True) for n in entry["measurement"]}
        assert {n: link.path for n, link in links.items()} == {
            "mot": "/1.1/instrument/mot/value", "counts": "/1.1/instrument/det/data",
            "silent": "/1.1/instrument/det/never"}
        assert entry["measurement/counts"][()].tolist() == [0, 3, 6, 9, 12]
        assert entry.get("outside", getlink=True).path == "/x"
        assert entry["outside"][()].tolist() == [0.0, 1.0, 2.0]
        assert entry["raw"][()].tolist() == [4, 5, 6]
        assert entry["every_other"].is_virtual and entry["every_other"].attrs["note"] == "VDS"
        assert entry["every_other"][()].tolist() == [0.0, 2.0, 4.0]
        assert entry["plot"].attrs["signal"] == "signal"
        notes = [n.decode() for n in entry["saving_notes"][()]]
        assert notes == ["streams not in the scan's h5maps are not saved (as BLISS's "
                         "writer): det:extra"]
        assert ".beacon_ipy_staging" not in fh and "scan_info" not in entry


def test_a_map_without_the_scans_entry_falls_back_to_scan_info_with_a_note(tmp_path):
    tree = custom_map("9.1", "x.h5", "raw.bin", "v.h5")
    path = save_one(tmp_path, {"title": "other entry", "h5maps": {"/f.h5": tree}}, number=2)
    with h5py.File(path, "r") as fh:
        entry = fh["2.1"]
        notes = [n.decode() for n in entry["saving_notes"][()]]
        assert any("holds entry '2.1'" in n and "derived from scan_info" in n for n in notes)
        assert "scan_info" in entry  # the scan_info layout
        np.testing.assert_array_equal(entry["measurement/counts"][()], [0, 3, 6, 9, 12])


def test_an_invalid_map_falls_back_to_scan_info_with_a_note(tmp_path):
    bad = {"type": "group", "children": {"x": {"type": "soft_link"}}}  # no target_path
    path = save_one(tmp_path, {"title": "bad map", "h5maps": {"/f.h5": bad}})
    with h5py.File(path, "r") as fh:
        notes = [n.decode() for n in fh["1.1/saving_notes"][()]]
        assert any("not a valid blissdata h5map tree" in n for n in notes), notes
        assert "instrument" in fh["1.1"] and "scan_info" in fh["1.1"]


def test_points_trimmed_before_saving_mark_an_h5maps_entry_incomplete(tmp_path):
    """The trimming rule holds in the h5maps layout too: full length, NaN where points
    were lost, ``@lost_points``, the entry's ``@beacon_ipy_incomplete`` and a note."""
    import gevent
    from blissdata.redis_engine.memory_tracker import MemoryTracker

    from beacon_ipy.scans.bdgaps import data_store

    session = new_session()
    tracker = MemoryTracker(data_store(), inactive_scan_deletion=3600,
                            closed_scan_deletion=3600, cleaning_time_slice=50)
    n = 1000
    with create_scan(session, {"title": "trimmed", "npoints": n}, [S.scalar("diode:x")],
                     path=tmp_path / "bliss" / "data.h5") as scan:
        for k in range(n):
            scan.push({"diode:x": float(k)})
            if k % 100 == 99:
                tracker.update()
                gevent.sleep(0.01)
    assert "h5maps" in scan.scan_info
    from peers.saver_helpers import load_scan

    def trimmed() -> bool:
        try:
            load_scan(scan.key).streams["diode:x"][0]
        except IndexError:
            return True
        return False

    for _ in range(20):  # each call forgets the oldest half of the server's history,
        tracker.update()  # which may hold other tests' scans first
        tracker.reclaim_memory(protected_history=0)
        if trimmed():
            break
    assert trimmed(), "the memory tracker did not trim the scan"
    with SessionSaver(session, tmp_path / "out", catch_up=True) as saver:
        status = saver.wait_saved(scan.scan_nb, timeout=30)
    assert status.state == "saved" and "INCOMPLETE" in status.incomplete
    path = SaveLayout(tmp_path / "out", session).scan_file(scan.scan_nb)
    with h5py.File(path, "r") as fh:
        entry = fh[f"{scan.scan_nb}.1"]
        assert entry.attrs["beacon_ipy_incomplete"]
        assert entry.get("measurement/diode_x", getlink=True).path == \
            f"/{scan.scan_nb}.1/instrument/diode/x"  # the map's layout
        saved = entry["measurement/diode_x"]
        assert saved.shape == (n,)
        (lost_start, lost_stop), = saved.attrs["lost_points"].tolist()
        assert lost_start == 0 < lost_stop <= n and np.isnan(saved[:lost_stop]).all()
        np.testing.assert_array_equal(saved[lost_stop:], np.arange(lost_stop, float(n)))
        notes = [v.decode() for v in entry["saving_notes"][()]]
        assert any("trimmed from Redis" in v for v in notes), notes


def test_the_entry_comparison_sees_each_kind_of_difference(tmp_path):
    """The side-by-side comparison with blisswriter is not vacuous."""
    import pytest
    from peers.h5compare import compare_entries

    def make(name, **change):
        with h5py.File(tmp_path / name, "w") as fh:
            e = fh.create_group("1.1")
            e.attrs["NX_class"] = change.get("cls", "NXentry")
            e["x"] = np.arange(3, dtype=change.get("dtype", "int32"))
            e["y"] = np.array([0.0, change.get("value", 1.0), np.nan])
            e["link"] = h5py.SoftLink(change.get("target", "/1.1/x"))
            if change.get("extra"):
                e["extra"] = 1
        return tmp_path / name

    base = make("a.h5")
    with h5py.File(base) as fa, h5py.File(make("b.h5")) as fb:
        assert compare_entries(fa["1.1"], fb["1.1"]) == ["link", "x", "y"]
    for change in ({"cls": "NXsubentry"}, {"dtype": "int64"}, {"value": 2.0},
                   {"target": "/1.1/y"}, {"extra": True}):
        other = make("c.h5", **change)
        with h5py.File(base) as fa, h5py.File(other) as fc, pytest.raises(AssertionError):
            compare_entries(fa["1.1"], fc["1.1"])


def test_demo_scans_follow_their_h5maps_and_are_valid_nexus(tmp_path):
    """ascan, timescan, amesh with 0d, MCA and detector images: every item of each scan's
    map is in the saved entry, with its kind; silx finds a valid NXdata by @default."""
    from blissdata.h5map import Group, SoftLink
    from peers.saver_helpers import load_scan, validate_nexus
    from silx.io import nxdata

    from beacon_ipy.demo import run_demo
    from beacon_ipy.saving import h5maps_layout

    session = new_session()
    out = tmp_path / "out"
    with SessionSaver(session, out) as saver:
        assert saver.wait_ready(10)
        scans = run_demo(session, scans=3, npoints=5, count_time=0.001,
                         data_dir=tmp_path / "det", frames_per_file=2)
        statuses = [saver.wait_saved(s.scan_nb, timeout=30) for s in scans]
    assert [s.state for s in statuses] == ["saved"] * 3
    layout = SaveLayout(out, session)
    for scan in scans:
        name = f"{scan.scan_nb}.1"
        bd = load_scan(scan.key)
        tree = h5maps_layout.entry_tree(bd.info, name)
        path = layout.scan_file(scan.scan_nb)
        assert validate_nexus(path) == {name: "plotselect"}
        streams = h5maps_layout.stream_paths(tree)
        assert set(streams.values()) == set(bd.streams)  # every stream is mapped: saved
        with h5py.File(path, "r") as fh:
            def check(item, where):
                if isinstance(item, Group):
                    assert isinstance(fh.get(where), h5py.Group), where
                    for key, child in item.children.items():
                        check(child, f"{where.rstrip('/')}/{key}")
                elif isinstance(item, SoftLink):
                    assert fh.get(where, getlink=True).path == item.target_path, where
                else:
                    assert isinstance(fh.get(where), h5py.Dataset), where

            check(tree, "/")
            images = [p for p, s in streams.items() if fh[p].ndim == 3]
            assert len(images) == 1 and fh[images[0]].is_virtual
            n = len(bd.streams[streams[images[0]]])  # 5 (ascan, timescan), 6 (amesh 3x2)
            assert fh[images[0]].shape[0] == n >= 5
            default = nxdata.get_default(fh)
            assert default is not None and default.is_valid and default.signal.shape[0] == n


def test_a_map_hdf5_refuses_falls_back_to_scan_info_with_a_note(tmp_path):
    """Valid for blissdata, refused by HDF5 (an empty soft link target): caught before the
    real file is touched, so the scan is saved (scan_info layout), not retried forever."""
    tree = custom_map("1.1", "x.h5", "raw.bin", "v.h5")
    tree["children"]["1.1"]["children"]["measurement"]["children"]["bad"] = {
        "type": "soft_link", "target_path": ""}
    path = save_one(tmp_path, {"title": "refused", "h5maps": {"/f.h5": tree}})
    with h5py.File(path, "r") as fh:
        notes = [n.decode() for n in fh["1.1/saving_notes"][()]]
        assert any("cannot be written as HDF5" in n and "scan_info" in n for n in notes), notes
        assert "scan_info" in fh["1.1"]
        np.testing.assert_array_equal(fh["1.1/measurement/counts"][()], [0, 3, 6, 9, 12])
