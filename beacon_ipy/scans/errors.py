"""Exceptions raised by the scan data layer, each saying what went wrong and what to do."""

from __future__ import annotations


class ScanDataError(Exception):
    """Base class of every scan-data error."""


class ScanExpiredError(ScanDataError, LookupError):
    """The scan is no longer in Redis (expired after its end, or trimmed from its session)."""

    def __init__(self, session: str, scan_nb: int | str, detail: str = ""):
        self.session = session
        self.scan_nb = scan_nb
        msg = (
            f"scan {scan_nb} of session {session!r} is no longer in Redis: scans expire "
            f"'expire_after_end' seconds after they end and a session keeps only its "
            f"'max_scans' most recent scans. Hold the scan (ScanNode.hold / SessionNode.hold) "
            f"to keep it until it has been read."
        )
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)


class ScanStateError(ScanDataError, RuntimeError):
    """A producer call that does not fit the scan's state (push before start, after end...)."""


class ScanDeclaredDeadError(ScanStateError):
    """The producer's heartbeat lapsed and a listener ended the scan with reason DIED."""
