"""Redis key layout of sessions and scans (documented in docs/scan_data.md).

Every key starts with ``bipy:``. A session's keys::

    bipy:session:<S>:counter   STRING  scan number counter (INCR), never expires
    bipy:session:<S>:events    STREAM  new_scan / end_scan events (MAXLEN ~ SESSION_EVENTS_MAXLEN)
    bipy:session:<S>:scans     ZSET    scan numbers possibly still in Redis (score = scan_nb)
    bipy:session:<S>:holds     HASH    holder -> deadline (Redis time, ms) of session-wide holds

A scan's keys (``<nb>`` is its number in the session)::

    bipy:scan:<S>:<nb>:meta    HASH    scan_info, state, end reason, node declarations
    bipy:scan:<S>:<nb>:data    STREAM  node, data and end entries, in production order
    bipy:scan:<S>:<nb>:holds   HASH    holder -> deadline (Redis time, ms)
    bipy:scan:<S>:<nb>:alive   STRING  producer heartbeat, expires unless refreshed
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PREFIX = "bipy"
SESSION_EVENTS_MAXLEN = 10_000

_SESSION_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")


def check_session_name(name: str) -> str:
    """Return ``name`` if it can be a session name, else raise ValueError saying why."""
    if not isinstance(name, str) or not _SESSION_NAME.match(name):
        raise ValueError(
            f"invalid session name {name!r}: use 1-100 characters among letters, digits, "
            f"'_', '.' and '-'"
        )
    return name


@dataclass(frozen=True)
class SessionKeys:
    """Names of one session's keys."""

    session: str

    def __post_init__(self):
        check_session_name(self.session)

    @property
    def base(self) -> str:
        return f"{PREFIX}:session:{self.session}"

    @property
    def counter(self) -> str:
        return f"{self.base}:counter"

    @property
    def events(self) -> str:
        return f"{self.base}:events"

    @property
    def scans(self) -> str:
        return f"{self.base}:scans"

    @property
    def holds(self) -> str:
        return f"{self.base}:holds"

    def scan(self, scan_nb: int) -> ScanKeys:
        return ScanKeys(self.session, int(scan_nb))


@dataclass(frozen=True)
class ScanKeys:
    """Names of one scan's keys."""

    session: str
    scan_nb: int

    @property
    def base(self) -> str:
        return f"{PREFIX}:scan:{self.session}:{self.scan_nb}"

    @property
    def meta(self) -> str:
        return f"{self.base}:meta"

    @property
    def data(self) -> str:
        return f"{self.base}:data"

    @property
    def holds(self) -> str:
        return f"{self.base}:holds"

    @property
    def alive(self) -> str:
        return f"{self.base}:alive"
