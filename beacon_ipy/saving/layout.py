"""Where a session's scans are saved: the file layout rule (docs/saving.md).

::

    <dir>/<session>.h5                 session master file: one external link per saved
                                       scan, "<nb>.1" -> <session>/scan<nb>.h5:/<nb>.1
    <dir>/<session>/scan0007.h5        one file per scan, holding entry "7.1"
    <dir>/<session>/scan0007.h5.part   the same while it is written (never final)
    <dir>/.<session>.saver.lock        held by the saver saving this session here
    <dir>/.<session>.saver.owner       who holds it (pid, host, start time)

A file without ``.part`` is complete: it appears by an atomic rename once closed and
synced. If ``scan0007.h5`` exists but belongs to another scan 7 (the session's scan
counter was reset, e.g. a Redis server without persistence restarted), the newcomer goes
to ``scan0007_2.h5`` (then ``_3``...) and its master link is ``"7.1_2"``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

_SCAN_FILE = re.compile(r"^scan(\d+)(?:_(\d+))?\.h5$")
_PART_FILE = re.compile(r"^scan(\d+)(?:_(\d+))?\.h5\.part$")


@dataclass(frozen=True)
class SavedScanFile:
    """A scan file found in the session directory."""

    scan_nb: int
    variant: int  # 1 for scan0007.h5, 2 for scan0007_2.h5...
    path: Path

    @property
    def entry_name(self) -> str:
        return entry_name(self.scan_nb)

    @property
    def link_name(self) -> str:
        return link_name(self.scan_nb, self.variant)


def entry_name(scan_nb: int) -> str:
    """NXentry name of a scan, as BLISS names it."""
    return f"{int(scan_nb)}.1"


def link_name(scan_nb: int, variant: int = 1) -> str:
    """Name of a scan's external link in the master file."""
    return entry_name(scan_nb) if variant <= 1 else f"{entry_name(scan_nb)}_{variant}"


@dataclass(frozen=True)
class SaveLayout:
    """Paths of one session's files in one output directory."""

    directory: Path
    session: str

    def __post_init__(self):
        object.__setattr__(self, "directory", Path(self.directory).expanduser().absolute())

    @property
    def scans_dir(self) -> Path:
        return self.directory / self.session

    @property
    def master(self) -> Path:
        return self.directory / f"{self.session}.h5"

    @property
    def master_tmp(self) -> Path:
        return self.directory / f".{self.session}.h5.tmp"

    @property
    def lock_file(self) -> Path:
        return self.directory / f".{self.session}.saver.lock"

    @property
    def owner_file(self) -> Path:
        return self.directory / f".{self.session}.saver.owner"

    @property
    def holder(self) -> str:
        """Name of this saver's holds on the session's scans (same across restarts)."""
        digest = hashlib.sha1(str(self.directory).encode()).hexdigest()[:12]
        return f"saver:{digest}"

    def scan_file(self, scan_nb: int, variant: int = 1) -> Path:
        suffix = "" if variant <= 1 else f"_{variant}"
        return self.scans_dir / f"scan{int(scan_nb):04d}{suffix}.h5"

    @staticmethod
    def part_file(final: Path) -> Path:
        return final.with_name(final.name + ".part")

    def saved_files(self) -> list[SavedScanFile]:
        """Complete scan files in the session directory, by scan number then variant."""
        found = []
        try:
            names = [p.name for p in self.scans_dir.iterdir()]
        except FileNotFoundError:
            return []
        for name in names:
            m = _SCAN_FILE.match(name)
            if m:
                found.append(SavedScanFile(int(m.group(1)), int(m.group(2) or 1),
                                           self.scans_dir / name))
        return sorted(found, key=lambda f: (f.scan_nb, f.variant))

    def part_files(self) -> list[tuple[int, Path]]:
        """``(scan_nb, path)`` of unfinished ``.part`` files."""
        try:
            names = [p.name for p in self.scans_dir.iterdir()]
        except FileNotFoundError:
            return []
        return sorted((int(m.group(1)), self.scans_dir / name)
                      for name in names if (m := _PART_FILE.match(name)))
