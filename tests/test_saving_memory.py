"""The saver under a memory bound: trimming never out-races it (docs/scan_data.md, Memory).

A real saver-aware memory tracker process (``python -m beacon_ipy.scans.memory``) trims a
real server with a small ``maxmemory`` while a scan twice as large is produced, and the
saver writes slowly: the file still holds every point, and Redis stayed under the bound.
"""

from __future__ import annotations

import sys
import time

import h5py
import numpy as np
from gevent import subprocess
from peers.memory_helpers import FAST_TRACKER, MAXMEMORY, PER_PUSH, SPECTRA, push_spectra_paced
from peers.scan_helpers import new_session, wait_for
from redis import Redis

from beacon_ipy.saving import SaveLayout, SessionSaver
from beacon_ipy.saving import scanfile as scanfile_module
from beacon_ipy.scans import StreamDescription, bdgaps, create_scan
from beacon_ipy.scans.memory import hold_key


def test_a_scan_twice_the_memory_bound_is_saved_whole_by_a_slow_saver(own_redis, tmp_path,
                                                                       monkeypatch):
    url = own_redis.url
    client = Redis.from_url(url)
    bdgaps.data_store(url)
    original = scanfile_module.ScanFile.apply

    def slow_apply(self, ops):
        time.sleep(0.02)  # a slow disk: the saver falls behind the producer
        return original(self, ops)

    monkeypatch.setattr(scanfile_module.ScanFile, "apply", slow_apply)
    tracker = subprocess.Popen([sys.executable, "-m", "beacon_ipy.scans.memory", "--redis-url",
                                bdgaps.data_url(url), *FAST_TRACKER],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    session = new_session()
    saver = SessionSaver(session, tmp_path, redis_url=url, flush_bytes=1 << 20,
                         flush_interval=0.05).start()
    try:
        wait_for(lambda: int(client.config_get("maxmemory")["maxmemory"]) == MAXMEMORY,
                 timeout=30, what="the tracker to set maxmemory")
        assert saver.wait_ready(10)
        scan = create_scan(session, {"type": "timescan", "npoints": SPECTRA},
                           [StreamDescription.spectrum("mca:spectrum", 2048, "float32")],
                           redis_url=url)
        scan.start()
        # the saver holds the scan before its data comes (in production the tracker's
        # protected history, 180 s by default, covers these milliseconds; here it is 0)
        stream_key = scan.scan.streams["mca:spectrum"].key
        wait_for(lambda: client.hget(hold_key(scan.key, saver.holder), stream_key)
                 is not None, what="the saver to hold the scan")
        peak = push_spectra_paced(scan, client)
        scan.end()
        status = saver.wait_saved(scan.scan_nb, timeout=120)
    finally:
        saver.stop()
        tracker.kill()
        tracker.communicate()
    assert status.state == "saved" and status.incomplete is None, status
    assert peak < MAXMEMORY
    assert client.xlen(scan.scan.streams["mca:spectrum"].key) < SPECTRA // PER_PUSH  # trimmed
    with h5py.File(SaveLayout(tmp_path, session).scan_file(scan.scan_nb), "r") as fh:
        entry = fh[f"{scan.scan_nb}.1"]
        assert "beacon_ipy_incomplete" not in entry.attrs
        data = entry["measurement/mca"]
        assert data.shape == (SPECTRA, 2048)
        np.testing.assert_array_equal(data[:, 0], np.arange(SPECTRA, dtype="float32"))
