"""Bounded memory: blissdata's memory tracker (saver-aware) with scans larger than the bound.

A real tracker process trims a real server with a small maxmemory while a scan 2x larger
than it is produced: memory stays under the bound, a saver holding the scan (``hold_as``)
receives every point although it is slower than the producer, and a reader that comes
later gets a clear ScanDataTrimmedError.
"""

from __future__ import annotations

import sys

import gevent
import pytest
from gevent import subprocess
from peers.memory_helpers import (
    FAST_TRACKER,
    MAXMEMORY,
    PER_PUSH,
    SPECTRA,
    SlowSaver,
    push_spectra_paced,
)
from peers.scan_helpers import new_session, wait_for
from redis import Redis

from beacon_ipy.scans import (
    ScanConsumer,
    ScanDataTrimmedError,
    ScanRunner,
    StreamDescription,
    bdgaps,
    create_scan,
)
from beacon_ipy.scans.memory import hold_key


def test_memory_stays_bounded_and_a_holding_saver_loses_nothing(own_redis):
    url = own_redis.url
    client = Redis.from_url(url)
    bdgaps.data_store(url)
    tracker = subprocess.Popen([sys.executable, "-m", "beacon_ipy.scans.memory", "--redis-url",
                                bdgaps.data_url(url), *FAST_TRACKER],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    session = new_session()
    saver = SlowSaver()
    started = gevent.event.Event()
    runner = ScanRunner(saver, session=session, url=url, hold_as="saver",
                        started_event=started)
    glet = runner.spawn()
    try:
        wait_for(lambda: int(client.config_get("maxmemory")["maxmemory"]) == MAXMEMORY,
                 timeout=30, what="the tracker to set maxmemory")
        assert started.wait(10)
        scan = create_scan(session, {"type": "timescan"},
                           [StreamDescription.spectrum("mca:spectrum", 2048, "float32")],
                           redis_url=url)
        scan.start()
        wait_for(lambda: client.hget(hold_key(scan.key, "saver"),
                                     scan.scan.streams["mca:spectrum"].key) is not None,
                 what="the saver to hold the scan")
        peak = push_spectra_paced(scan, client)
        scan.end()
        assert saver.ended.wait(60)
        runner.stop()
        glet.get(timeout=5)
        assert saver.next == SPECTRA and saver.lost == []  # the saver was never out-raced
        assert peak < MAXMEMORY
        # without a hold, a late reader learns exactly what is gone
        with pytest.raises(ScanDataTrimmedError, match="points 0 to"):
            ScanRunner(ScanConsumer(), scan_key=scan.key, url=url).run()
    finally:
        runner.stop()
        tracker.kill()
        tracker.communicate()
    assert client.xlen(scan.scan.streams["mca:spectrum"].key) < SPECTRA // PER_PUSH
