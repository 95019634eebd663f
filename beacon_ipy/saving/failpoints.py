"""Crash injection for the crash-safety tests: die with SIGKILL at a named step.

``BEACON_IPY_SAVER_CRASH=step[@scan_nb][,step...]`` makes a saver process kill itself
(SIGKILL: no cleanup at all, like a power cut of the process) when it reaches ``step``
(for scan ``scan_nb`` only, if given). The steps are the windows of the write protocol
(docs/saving.md): ``part_created``, ``data_written``, ``before_finalize``,
``before_rename``, ``after_rename``, ``before_master_replace``, ``before_release``. Unset, this costs one dict
lookup per step.
"""

from __future__ import annotations

import os
import signal

ENV = "BEACON_IPY_SAVER_CRASH"

_parsed: tuple[str, set[tuple[str, int | None]]] | None = None


def _points() -> set[tuple[str, int | None]]:
    global _parsed
    raw = os.environ.get(ENV, "")
    if _parsed is None or _parsed[0] != raw:
        points: set[tuple[str, int | None]] = set()
        for item in filter(None, (s.strip() for s in raw.split(","))):
            name, _, nb = item.partition("@")
            if not nb:
                points.add((name, None))
            elif nb.isdigit():
                points.add((name, int(nb)))
        _parsed = (raw, points)
    return _parsed[1]


def failpoint(step: str, scan_nb: int | None = None) -> None:
    """Kill this process now if ``step`` (for ``scan_nb``) is listed in the environment."""
    points = _points()
    if points and ((step, None) in points or (step, scan_nb) in points):
        os.kill(os.getpid(), signal.SIGKILL)
