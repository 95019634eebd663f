"""Run the demo's sequence of scans: a fixed number, or until stopped."""

from __future__ import annotations

from typing import Any

from beacon_ipy.demo.scans import demo_sequence
from beacon_ipy.scans import ScanPublisher


def run_demo(session: str = "demo", scans: int = 3, npoints: int = 20,
             count_time: float = 0.1, *, stop_event: Any = None,
             **options) -> list[ScanPublisher]:
    """Run ``scans`` scans (0 = until ``stop_event`` is set or Ctrl-C) into ``session``.

    ``options`` are :class:`~beacon_ipy.demo.scans.ScanOptions` fields (``redis_url``,
    ``data_dir``, ``progress``, ``with_mca``, ``with_image``, ``producer_options``...).
    Returns the publishers of the scans run (``.scan_nb``, ``.name``, ``.end_reason``).
    """
    if scans < 0 or npoints < 1 or count_time < 0:
        raise ValueError("need scans >= 0, npoints >= 1 and count_time >= 0")
    done: list[ScanPublisher] = []
    for make_scan in demo_sequence(npoints, count_time, session=session, **options):
        if (scans and len(done) >= scans) or (stop_event is not None and stop_event.is_set()):
            break
        done.append(make_scan())
    return done
