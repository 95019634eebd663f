"""Scans larger than a memory bound, shared by the memory tests of the scan layer, the
embedded server's tracker and the saver: the bound, a slow consumer, and a producer loop
paced by the tracker (as an acquisition is paced by its detector)."""

from __future__ import annotations

import gevent
import gevent.event
import numpy as np

from beacon_ipy.scans import ScanConsumer
from peers.scan_helpers import wait_for

MAXMEMORY = 24 * 2**20
SPECTRA, PER_PUSH = 6000, 100  # 6000 x 8 KiB = 47 MiB: twice the bound
#: the tracker's options that make it trim within these tests' seconds
FAST_TRACKER = ["--maxmemory", str(MAXMEMORY), "--cleaning-threshold", "50",
                "--protected-history", "0", "--monitoring-period", "0.05",
                "--cleaning-time-slice", "50"]


class SlowSaver(ScanConsumer):
    """Checks every point arrives once, in order, and reads slower than the producer."""

    def __init__(self):
        self.next = 0
        self.lost = []
        self.ended = gevent.event.Event()

    def new_data(self, scan, stream, block):
        assert block.start == self.next, "a gap"
        np.testing.assert_array_equal(block.data[:, 0], np.arange(block.start, block.stop))
        self.next = block.stop
        gevent.sleep(0.002 * len(block))  # a saver slower than the producer

    def data_lost(self, scan, stream, error):
        self.lost.append(error)

    def end_scan(self, scan, end):
        self.ended.set()


def push_spectra_paced(scan, client) -> int:
    """Push SPECTRA numbered 2048-float32 spectra to ``scan``'s "mca:spectrum", each block
    once the server's memory is below 70 % of the bound; return the peak memory seen."""
    peak = 0
    for first in range(0, SPECTRA, PER_PUSH):
        block = np.zeros((PER_PUSH, 2048), "float32")
        block[:, 0] = np.arange(first, first + PER_PUSH)
        wait_for(lambda: client.info("memory")["used_memory"] < 0.7 * MAXMEMORY,
                 timeout=30, what="the tracker to free memory")
        scan.push("mca:spectrum", block)
        scan.flush()
        gevent.sleep(0)  # consumers in this process's greenlets run
        peak = max(peak, client.info("memory")["used_memory"])
    return peak
