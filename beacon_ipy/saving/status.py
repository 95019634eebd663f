"""What a saver reports: per-scan progress and errors, and the saver's own state.

Plain dataclasses, copied when handed out (``SessionSaver.status()``), so a widget or a
progress bar can read them from anywhere without racing the saver.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

# ScanStatus.state values
WAITING = "waiting"        # known, not started (queued behind other catch-up scans)
SAVING = "saving"          # data being written into the .part file
FINALIZING = "finalizing"  # scan ended: images, metadata, rename
SAVED = "saved"            # file in place, "saver pending" marker released (see incomplete)
RETRYING = "retrying"      # an error happened; the scan is kept in Redis and tried again
FAILED = "failed"          # cannot be saved (the scan left Redis); see error
STOPPED = "stopped"        # the saver stopped before the scan was saved (marker kept)


@dataclass
class ScanStatus:
    """Progress of one scan."""

    scan_nb: int
    name: str = ""
    title: str = ""
    state: str = WAITING
    points: int = 0                    # most points saved in any channel
    npoints: int | None = None         # expected (scan_info["npoints"]), if known
    channels: dict[str, int] = field(default_factory=dict)  # points saved per channel
    bytes_written: int = 0
    file: str = ""                     # final file path (a .part file until SAVED)
    end_reason: str | None = None
    error: str | None = None           # the last error, kept after a successful retry
    retries: int = 0
    started: float = 0.0
    finished: float | None = None
    key: str = ""                      # the scan's blissdata key (its identity)
    incomplete: str | None = None      # SAVED, but points were trimmed before read: what

    @property
    def done(self) -> bool:
        return self.state in (SAVED, FAILED)

    def copy(self) -> ScanStatus:
        return dataclasses.replace(self, channels=dict(self.channels))


@dataclass
class SaverStatus:
    """State of a :class:`~beacon_ipy.saving.SessionSaver`."""

    session: str
    directory: str
    master_file: str
    state: str = "created"             # created, running, stopping, stopped, failed
    redis_connected: bool = True
    scans: dict[int, ScanStatus] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)  # saver-level, most recent last

    @property
    def saved(self) -> list[int]:
        return [nb for nb, s in self.scans.items() if s.state == SAVED]

    @property
    def active(self) -> list[int]:
        return [nb for nb, s in self.scans.items() if not s.done and s.state != STOPPED]

    def copy(self) -> SaverStatus:
        return dataclasses.replace(self, scans={k: v.copy() for k, v in self.scans.items()},
                                   errors=list(self.errors))
