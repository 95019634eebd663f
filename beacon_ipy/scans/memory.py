"""Bounded memory on a beacon-ipy data Redis: blissdata's memory tracker, saver-aware.

A BLISS data Redis runs ``blissdata.redis_engine.memory_tracker``: with a ``maxmemory``, it
journals each data stream's last id every ``monitoring_period``, and above
``cleaning_threshold`` % of maxmemory it trims the oldest ``cleaning_time_slice`` % of that
journal (older than ``protected_history`` s) from every stream; closed scans expire after
``closed_scan_deletion`` s. beacon-ipy runs the same tracker (:class:`SaverAwareTracker`,
``python -m beacon_ipy.scans.memory --redis-url URL --maxmemory 512mb``) with ONE rule added:

**Trimming never out-races a running saver.** A consumer that must not lose data (a saver)
runs its ``ScanRunner(..., hold_as="<saver name>")``. For every scan it follows, the runner
keeps a hold: a Redis hash ``beacon_ipy:hold:<scan key>:<holder>`` = ``{stream key: index of
the first point not yet read}``, refreshed every 0.5 s with a TTL (``hold_ttl``, default 60 s,
so a dead saver stops holding) and deleted at ``end_scan``. The tracker trims a held stream
only below the smallest such index of all its holders: what a saver has read may go, what it
has not read stays. Memory stays bounded as long as savers keep up; a saver that falls behind
holds back only its own unread points (the producer then meets Redis's OOM error rather than
the saver losing data, which is the point). Scans without a hold are trimmed as BLISS does;
their readers get :class:`~beacon_ipy.scans.errors.ScanDataTrimmedError` for what they missed.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Any

HOLD_PREFIX = "beacon_ipy:hold:"
DEFAULT_HOLD_TTL = 60.0


def hold_key(scan_key: str, holder: str) -> str:
    return f"{HOLD_PREFIX}{scan_key}:{holder}"


def set_hold(client: Any, scan_key: str, holder: str, progress: dict[str, int],
             ttl: float = DEFAULT_HOLD_TTL) -> None:
    """Hold ``scan_key`` for ``holder``: ``progress`` = {stream key: first unread index}."""
    key = hold_key(scan_key, holder)
    with client.pipeline(transaction=True) as pipe:
        pipe.hset(key, mapping={"_": 0, **{k: int(v) for k, v in progress.items()}})
        pipe.pexpire(key, int(ttl * 1000))
        pipe.execute()


def release_hold(client: Any, scan_key: str, holder: str) -> None:
    client.delete(hold_key(scan_key, holder))


def held_progress(client: Any) -> dict[str, int]:
    """{stream key: smallest first-unread index over every live hold}."""
    out: dict[str, int] = {}
    for key in client.scan_iter(match=f"{HOLD_PREFIX}*", count=1000):
        for stream, index in client.hgetall(key).items():
            if stream == b"_":
                continue
            name = stream.decode()
            out[name] = min(out.get(name, 1 << 62), int(index))
    return out


def _entry_index(entry_id: bytes | str) -> int:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.split("-")[0])


def _tracker_class():
    from blissdata.redis_engine.memory_tracker import (
        SEAL_ID,
        MemoryTracker,
        NoFreeableMemoryError,
        memory_tracking_stream,
    )

    class SaverAwareTracker(MemoryTracker):
        """blissdata's MemoryTracker whose trimming stops at what holders have not read."""

        def reclaim_memory(self, protected_history: int):
            r = self._data_store._redis
            sec, usec = r.time()
            now_ms = sec * 1000 + usec // 1000
            raw = r.xrange(memory_tracking_stream, count=1)
            if not raw:
                raise NoFreeableMemoryError
            origin = int(raw[0][0].decode().split("-")[0])
            horizon = origin + (now_ms - origin) * self.cleaning_time_slice // 100
            horizon = min(horizon, now_ms - protected_history * 1000)
            if horizon <= origin:
                raise NoFreeableMemoryError
            streams: dict[bytes, bytes] = {}
            for _, entry in r.xrange(memory_tracking_stream, max=horizon):
                streams.update(entry)
            held = held_progress(r)
            for key, idx in streams.items():
                limit = r.xlen(key) - 1
                if limit <= 0:
                    continue
                hold = held.get(key.decode())
                if hold is not None and (idx == SEAL_ID or _entry_index(idx) > hold):
                    idx = f"{hold}-0".encode()  # keep what a saver has not read
                    if hold == 0:
                        continue
                if idx != SEAL_ID:
                    r.xtrim(key, minid=idx, limit=limit)
                else:
                    r.xtrim(key, minid=idx, approximate=False)
            r.xtrim(memory_tracking_stream, minid=horizon, approximate=False)
            logging.info("trimmed the oldest %s%% of stream history (%d held streams "
                         "spared)", self.cleaning_time_slice, len(held))

    return SaverAwareTracker


def run(redis_url: str, maxmemory: str | None = None, cleaning_threshold: int = 80,
        protected_history: float = 180, monitoring_period: float = 30,
        inactive_scan_deletion: int = 24 * 3600, closed_scan_deletion: int = 7 * 24 * 3600,
        cleaning_time_slice: int = 20, iterations: int | None = None) -> None:
    """The tracker loop (blissdata's ``run`` with the saver-aware tracker)."""
    import redis

    from beacon_ipy.scans import bdgaps

    store = bdgaps.data_store(redis_url)
    r = store._redis
    if maxmemory:
        r.config_set("maxmemory", maxmemory)
        r.config_set("maxmemory-policy", "noeviction")
    max_memory = int(r.config_get("maxmemory")["maxmemory"])
    if not max_memory:
        raise SystemExit("beacon-ipy memory tracker: the server has no maxmemory; give "
                         "--maxmemory (e.g. 512mb)")
    trigger = max_memory * cleaning_threshold // 100
    tracker = _tracker_class()(store, inactive_scan_deletion, closed_scan_deletion,
                               cleaning_time_slice)
    from blissdata.redis_engine.memory_tracker import NoFreeableMemoryError

    n = 0
    while iterations is None or n < iterations:
        n += 1
        try:
            tracker.update()
        except redis.exceptions.OutOfMemoryError:
            logging.critical("Redis is out of memory, retrying")
            time.sleep(0.2)
            continue
        if r.info("memory")["used_memory"] >= trigger:
            try:
                tracker.reclaim_memory(protected_history)
            except NoFreeableMemoryError:
                logging.warning("nothing freeable yet (protected history %s s)",
                                protected_history)
                time.sleep(monitoring_period)
        else:
            time.sleep(monitoring_period)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="blissdata's memory tracker, saver-aware")
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--maxmemory", help="set the server's maxmemory (e.g. 512mb)")
    parser.add_argument("--cleaning-threshold", type=int, default=80)
    parser.add_argument("--protected-history", type=float, default=180)
    parser.add_argument("--monitoring-period", type=float, default=30)
    parser.add_argument("--cleaning-time-slice", type=int, default=20)
    parser.add_argument("--closed-scan-deletion", type=int, default=7 * 24 * 3600)
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s: %(message)s", level=logging.INFO,
                        stream=sys.stdout)
    try:
        run(args.redis_url, args.maxmemory, args.cleaning_threshold, args.protected_history,
            args.monitoring_period, closed_scan_deletion=args.closed_scan_deletion,
            cleaning_time_slice=args.cleaning_time_slice)
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
