"""Side by side: the demo's scans saved by BLISS's own writer and by beacon-ipy's saver.

``blisswriter run URL`` (3.0.0, its own virtualenv) and a :class:`SessionSaver` follow the
same Redis; the demo publishes an ascan, a timescan and an amesh, each with 0d counters,
an MCA spectrum and a 2D detector whose frames are in Lima-style files. Entry by entry,
both files hold the same groups, datasets (values, dtype, shape), links and attributes.
"""

from __future__ import annotations

from pathlib import Path

import gevent
import h5py
import pytest
from gevent import subprocess
from peers.h5compare import compare_entries
from peers.scan_helpers import new_session, wait_for

from beacon_ipy.demo import run_demo
from beacon_ipy.saving import SaveLayout, SessionSaver
from beacon_ipy.scans import bdgaps, create_scan

# deliberate differences (docs/saving.md, "Following h5maps"): none inside an entry for
# these scans; the root's writer stamps (file_time, HDF5_Version...) are not compared


def start_blisswriter(session: str):
    from blisswriter_env import blisswriter_python

    python = blisswriter_python()
    bdgaps.data_store()
    writer = subprocess.Popen([python, "-c", "from blisswriter.cli import cli; cli()", "run",
                               bdgaps.data_url(), "--log-level", "INFO"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log: list[str] = []
    reader = gevent.spawn(lambda: [log.append(line) for line in writer.stdout])

    def probed():  # it says nothing when ready: probe scans until it logs one
        with create_scan(session + "probe", {"type": "probe"}) as probe:
            pass
        try:
            return wait_for(lambda: any(probe.key in line for line in log) or writer.poll()
                            is not None, timeout=1.0, what="probe")
        except AssertionError:
            return False

    wait_for(probed, timeout=60, what="blisswriter to follow new scans")
    assert writer.poll() is None, "".join(log)
    return writer, reader, log


def saving_complete(log: list[str], since: int) -> int:
    """How many scans blisswriter finished since ``log[since]``: it logs "Saving complete."
    after writing a scan's stream attributes, which come after its ``end_reason``; a
    file that already has ``end_reason`` may still lack them."""
    return sum("Saving complete." in line for line in log[since:])


@pytest.mark.slow
def test_demo_scans_saved_like_blisswriter_entry_by_entry(tmp_path):
    from silx.io import nxdata

    session = new_session()
    out = tmp_path / "out"
    writer, reader, log = start_blisswriter(session)
    saver = SessionSaver(session, out).start()
    assert saver.wait_ready(10)
    since = len(log)
    try:
        scans = run_demo(session, scans=3, npoints=6, count_time=0.002,
                         data_dir=tmp_path / "data", frames_per_file=4)
        statuses = [saver.wait_saved(s.scan_nb, timeout=60) for s in scans]
        theirs = Path(scans[0].path)

        def blisswriter_done():
            try:
                with h5py.File(theirs, "r", locking=False) as fh:
                    ended = all(f"{s.scan_nb}.1/end_reason" in fh for s in scans)
            except OSError:
                return False
            return ended and saving_complete(log, since) >= len(scans)

        wait_for(blisswriter_done, timeout=60, what="blisswriter's file")
    finally:
        saver.stop()
        writer.terminate()
        writer.wait(10)
        reader.join(5)
    assert [s.state for s in statuses] == ["saved"] * 3
    layout = SaveLayout(out, session)
    kinds = []
    with h5py.File(theirs, "r") as fb:
        for scan in scans:
            name = f"{scan.scan_nb}.1"
            with h5py.File(layout.scan_file(scan.scan_nb), "r") as fa:
                assert fa.attrs["NX_class"] == fb.attrs["NX_class"]
                assert fa.attrs["default"] == name  # the map's: its own (latest) entry
                paths = compare_entries(fa[name], fb[name])
                assert {"title", "instrument", "measurement", "plotselect"} <= set(paths)
                virtual = [p for p in paths if isinstance(fa[name].get(p), h5py.Dataset)
                           and fa[name][p].is_virtual]
                assert virtual, f"{name}: no image stack compared"
                spectra = [p for p in paths if isinstance(fa[name].get(p), h5py.Dataset)
                           and fa[name][p].ndim == 2 and not fa[name][p].is_virtual]
                assert spectra, f"{name}: no MCA spectra compared"
                kinds.append(fa[name]["title"][()].decode().split()[0])
                # silx: a valid NXdata, reached through the @default chain
                default = nxdata.get_default(fa)
                assert default is not None and default.signal is not None
                assert nxdata.is_valid_nxdata(fa[name]["plotselect"])
    assert kinds == ["ascan", "timescan", "amesh"], kinds
    # the master file links every entry into the scan files, and reaches them through silx
    with h5py.File(layout.master, "r") as fm:
        for scan in scans:
            assert fm[f"{scan.scan_nb}.1/end_reason"][()] == b"SUCCESS"


@pytest.mark.slow
def test_every_h5map_item_kind_saved_like_blisswriter(tmp_path):
    """A hand-made map with every item kind (typed inline values, base64, compound, string
    arrays, links, external binary data, a stream mapped twice, one with no point):
    blisswriter and the saver write the same entry, but for the virtual_dataset item that
    blisswriter 3.0.0 does not write."""
    import numpy as np
    from test_saving_h5maps import custom_map

    from beacon_ipy.scans import StreamDescription as S

    with h5py.File(tmp_path / "ext.h5", "w") as fh:
        fh["x"] = np.arange(3.0)
    with h5py.File(tmp_path / "vds.h5", "w") as fh:
        fh["v"] = np.arange(6.0)
    (tmp_path / "raw.bin").write_bytes(np.array([4, 5, 6], dtype="<i4").tobytes())
    session = new_session()
    theirs = tmp_path / "bliss" / "data.h5"
    theirs.parent.mkdir()
    tree = custom_map("1.1", str(tmp_path / "ext.h5"), str(tmp_path / "raw.bin"),
                      str(tmp_path / "vds.h5"))
    writer, reader, log = start_blisswriter(session)
    saver = SessionSaver(session, tmp_path / "out").start()
    assert saver.wait_ready(10)
    streams = [S.scalar("axis:mot", "float64", unit="mm"), S.scalar("det:counts", "int32"),
               S.scalar("det:silent", "float64"), S.scalar("det:extra", "float64")]
    since = len(log)
    try:
        with create_scan(session, {"title": "custom map", "h5maps": {str(theirs): tree}},
                         streams, number=1, path=theirs, h5maps=False) as scan:
            scan.push("axis:mot", np.arange(5) * 0.5)
            scan.push("det:counts", np.arange(5, dtype=np.int32) * 3)
            scan.push("det:extra", np.ones(5))
        status = saver.wait_saved(1, timeout=30)

        def blisswriter_done():
            try:
                with h5py.File(theirs, "r", locking=False) as fh:
                    ended = "1.1/end_reason" in fh
            except OSError:
                return False
            return ended and saving_complete(log, since) >= 1

        wait_for(blisswriter_done, timeout=60, what="blisswriter's file")
    finally:
        saver.stop()
        writer.terminate()
        writer.wait(10)
        reader.join(5)
    assert status.state == "saved", status.error
    ours = SaveLayout(tmp_path / "out", session).scan_file(1)
    with h5py.File(ours, "r") as fa, h5py.File(theirs, "r") as fb:
        assert "every_other" not in fb["1.1"] and fa["1.1/every_other"].is_virtual
        paths = compare_entries(fa["1.1"], fb["1.1"],
                                allowed=frozenset({"every_other", "saving_notes"}))
        assert {"count", "nan", "blob", "table", "names", "raw", "outside",
                "instrument/det/again", "measurement/silent"} <= set(paths)
        assert fa["1.1/count"].dtype == fb["1.1/count"].dtype == np.int16
