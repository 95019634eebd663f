"""Exceptions raised by the scan data layer, each saying what went wrong and what to do."""

from __future__ import annotations


class ScanDataError(Exception):
    """Base class of every scan-data error."""


class ScanExpiredError(ScanDataError, LookupError):
    """The scan is no longer in Redis (deleted, or expired after its end)."""

    def __init__(self, session: str, scan_nb: int | str, detail: str = ""):
        self.session = session
        self.scan_nb = scan_nb
        msg = (f"scan {scan_nb} of session {session!r} is no longer in Redis: blissdata "
               f"deletes closed scans after a while (BLISS's memory tracker: 7 days, "
               f"beacon-ipy's embedded server: see docs/scan_data.md) and on delete_scan")
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)


class ScanDataTrimmedError(ScanDataError, IndexError):
    """Points of a stream were trimmed from Redis (memory tracker) before they were read.

    ``scan`` (``"<session> #<number> <key>"``), ``stream``, and the lost index range
    ``start``..``stop`` (exclusive) say exactly what is gone.
    """

    def __init__(self, scan: str, stream: str, start: int, stop: int):
        self.scan = scan
        self.stream = stream
        self.start = start
        self.stop = stop
        super().__init__(
            f"scan {scan}: points {start} to {stop - 1} of stream {stream!r} were trimmed "
            f"from Redis by the memory tracker before they were read ({stop - start} point(s) "
            f"lost). Read scans while they run, raise the Redis maxmemory, or register as a "
            f"saver (beacon_ipy.scans.memory.hold_scan) so that trimming waits for you.")


class ScanStateError(ScanDataError, RuntimeError):
    """A producer call that does not fit the scan's state (push before start, after end...)."""
