"""Saver faults with real filesystems and processes: read-only, disk full, locked files.

Each fault must give a clear error, keep the scan's data in Redis (held) until it is
saved, let other scans be saved meanwhile, and end with the scan saved once the fault
is gone. Small filesystems are real tmpfs mounts (root); without root, a file-size
limit (RLIMIT_FSIZE) on the saver process stands in for a full disk.
"""

from __future__ import annotations

import os
import resource
import signal
import sys

import h5py
import numpy as np
import pytest
from peer import Peer
from peers.saver_helpers import SaverProcess, is_pending, text, try_small_fs, validate_nexus
from peers.scan_helpers import new_session, wait_for

from beacon_ipy.saving import DirectoryNotWritableError, SaveLayout, SessionSaver
from beacon_ipy.scans import StreamDescription as S
from beacon_ipy.scans import create_scan


class Writability:
    """Make a directory read-only and writable again: a tmpfs remount, or chmod."""

    def __init__(self, path):
        self.fs = try_small_fs(path, "4m")
        self.path = path
        if self.fs is None:
            if os.geteuid() == 0:
                pytest.skip("cannot mount a tmpfs here, and chmod does not stop root")
            path.mkdir(parents=True, exist_ok=True)

    def read_only(self, flag: bool) -> None:
        if self.fs is not None:
            self.fs.read_only(flag)
        else:
            self.path.chmod(0o555 if flag else 0o755)
            for sub in self.path.iterdir():
                if sub.is_dir():
                    sub.chmod(0o555 if flag else 0o755)

    def close(self) -> None:
        if self.fs is not None:
            self.fs.close()
        else:
            self.read_only(False)


@pytest.fixture
def writability(tmp_path):
    w = Writability(tmp_path / "fs")
    yield w
    w.close()


def test_an_unwritable_directory_is_refused_clearly(writability, tmp_path):
    session = new_session()
    writability.read_only(True)
    with pytest.raises(DirectoryNotWritableError) as err:
        SessionSaver(session, writability.path / "sub").start()
    message = str(err.value)
    assert "cannot save session" in message and "Choose a directory" in message
    proc = SaverProcess(session, writability.path, log=tmp_path / "saver.log")
    refused = proc.expect("refused")
    assert proc.wait() == 2 and "cannot save session" in refused["error"]


def test_a_directory_turning_read_only_mid_run_is_retried(tmp_path):
    session = new_session()
    out = tmp_path / "out"
    # the session's scan directory is a mount of its own (the saver's lock file, open
    # for writing in the parent directory, would make a read-only remount "busy")
    scans_dir = Writability(out / session)
    try:
        with SessionSaver(session, out, retry_interval=(0.1, 0.3)) as saver:
            saver.wait_ready(10)
            scans_dir.read_only(True)
            try:
                with create_scan(session, {"title": "ro"}, [S.scalar("x")]) as scan:
                    scan.push("x", np.arange(5.0))
                wait_for(lambda: getattr(saver.scan_status(scan.scan_nb), "state", "")
                         == "retrying", 10, "a write error")
                error = saver.scan_status(scan.scan_nb).error
                assert "permission denied" in error and "saving retries" in error, error
                assert is_pending(out, session, scan.key)
            finally:
                scans_dir.read_only(False)
            status = saver.wait_saved(scan.scan_nb, timeout=20)
        assert status.state == "saved" and status.retries >= 1
        path = SaveLayout(out, session).scan_file(scan.scan_nb)
        with h5py.File(path, "r") as fh:
            assert fh[f"{scan.scan_nb}.1/measurement/x"][()].tolist() == [0, 1, 2, 3, 4]
    finally:
        scans_dir.close()


def _limit_file_size(limit: int):
    def preexec():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    return preexec


def test_disk_full_keeps_the_scan_in_redis_until_space_is_back(tmp_path, request):
    session = new_session()
    fs = try_small_fs(tmp_path / "fs", "3m")
    if fs is not None:
        request.addfinalizer(fs.close)
    directory = fs.path if fs is not None else tmp_path / "out"
    preexec = None if fs is not None else _limit_file_size(3 << 20)
    spectra = np.random.default_rng(3).random((512, 2048), dtype=np.float32)  # 4 MiB
    proc = SaverProcess(session, directory, "--retry-interval", "0.2:0.5",
                        log=tmp_path / "saver.log", preexec_fn=preexec)
    try:
        proc.expect("started")
        with create_scan(session, {"title": "big", "npoints": 512},
                         [S.spectrum("mca:spectrum", 2048)]) as big:
            for k in range(0, 512, 64):
                big.push("mca:spectrum", spectra[k:k + 64])
        error = proc.expect("error", scan_nb=big.scan_nb, timeout=30)["error"]
        assert "disk full" in error or "file too large" in error, error
        assert "saving retries" in error
        assert is_pending(directory, session, big.key)  # its data stays in Redis
        with create_scan(session, {"title": "small"}, [S.scalar("x")]) as small:
            small.push("x", np.arange(10.0))
        proc.expect("saved", scan_nb=small.scan_nb, timeout=30)  # other scans go on
        assert not any(e.get("event") == "saved" and e.get("scan_nb") == big.scan_nb
                       for e in proc.events)
        assert is_pending(directory, session, big.key)
        if fs is not None:
            fs.resize("64m")
        else:
            resource.prlimit(proc.pid, resource.RLIMIT_FSIZE,
                             (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        proc.expect("saved", scan_nb=big.scan_nb, timeout=30)
        assert not is_pending(directory, session, big.key)
        assert proc.terminate() == 0
    finally:
        proc.kill9()
    layout = SaveLayout(directory, session)
    validate_nexus(layout.scan_file(big.scan_nb))
    with h5py.File(layout.scan_file(big.scan_nb), "r") as fh:
        np.testing.assert_array_equal(fh[f"{big.scan_nb}.1/measurement/mca"][()], spectra)
    assert not list(layout.scans_dir.glob("*.part"))


def test_files_held_open_by_other_programs(tmp_path):
    """A reader holding files never blocks saving; a writer's lock gives a clear retry."""
    session = new_session()
    out = tmp_path / "out"
    layout = SaveLayout(out, session)
    with SessionSaver(session, out) as first:
        first.wait_ready(10)
        with create_scan(session, {"title": "one"}, [S.scalar("x")]) as one:
            one.push("x", np.arange(3.0))
        assert first.wait_saved(one.scan_nb, 20).state == "saved"
    saved_bytes = layout.scan_file(one.scan_nb).read_bytes()
    # a user opened scan one's file for writing (HDF5 takes an exclusive lock)...
    with Peer("saver_file_holder.py", "a", str(layout.scan_file(one.scan_nb))) as writer:
        writer.expect("opened")
        # ...and a new saver catching up must check that file: locked -> clear error
        saver = SessionSaver(session, out, catch_up=True, retry_interval=(0.1, 0.3)).start()
        try:
            wait_for(lambda: (saver.scan_status(one.scan_nb) or 0) and
                     saver.scan_status(one.scan_nb).state == "retrying", 15, "lock error")
            error = saver.scan_status(one.scan_nb).error
            assert "locked by another program" in error and "Close it there" in error, error
            assert is_pending(out, session, one.key)
            # meanwhile a reader holds the master file and the saver goes on saving
            with Peer("saver_file_holder.py", "r", str(layout.master)) as reader:
                assert reader.expect("opened")["entries"][str(layout.master)] == ["1.1"]
                with create_scan(session, {"title": "two"}, [S.scalar("x")]) as two:
                    two.push("x", np.arange(4.0))
                assert saver.wait_saved(two.scan_nb, 20).state == "saved"
                reader.send(cmd="close")
                reader.expect("closed")
            # still not saved: it keeps retrying (each attempt shows "saving" briefly)
            wait_for(lambda: saver.scan_status(one.scan_nb).state == "retrying", 10,
                     "scan one to be retrying again")
            writer.send(cmd="close")
            writer.expect("closed")
            status = saver.wait_saved(one.scan_nb, 20)
            assert status.state == "saved" and status.file == str(layout.scan_file(1))
        finally:
            saver.stop()
    assert layout.scan_file(one.scan_nb).read_bytes() == saved_bytes  # recognised, not redone
    assert not is_pending(out, session, one.key)
    assert sorted(validate_nexus(layout.master)) == ["1.1", "2.1"]
    with h5py.File(layout.master, "r") as fh:
        assert text(fh["2.1/title"]) == "two"


@pytest.mark.skipif(sys.platform != "linux", reason="tmpfs")
def test_helpers_mount_real_small_filesystems(tmp_path):
    fs = try_small_fs(tmp_path / "fs", "1m")
    if fs is None:
        pytest.skip("no mount permission: the RLIMIT_FSIZE fallback is used instead")
    try:
        with pytest.raises(OSError) as err:
            (fs.path / "big").write_bytes(b"\0" * (2 << 20))
        assert err.value.errno == 28
    finally:
        fs.close()
