"""Bounded memory on a beacon-ipy data Redis: blissdata's memory tracker, saver-aware.

A BLISS data Redis runs ``blissdata.redis_engine.memory_tracker``: with a ``maxmemory``, it
journals each data stream's last id every ``monitoring_period``, and above
``cleaning_threshold`` % of maxmemory it trims the oldest ``cleaning_time_slice`` % of that
journal (older than ``protected_history`` s) from every stream; closed scans expire after
``closed_scan_deletion`` s. beacon-ipy runs the same tracker (:class:`SaverAwareTracker`,
``python -m beacon_ipy.scans.memory --redis-url URL --maxmemory 512mb``; on the embedded
server it is started automatically, :mod:`.tracker`) with ONE rule added:

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

from beacon_ipy.connection.embedded import pid_alive

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


class ServerGone(Exception):
    """The server the tracker serves has stopped: the tracker exits."""


def _server_alive(pid: int | None) -> bool:
    return pid is None or pid_alive(pid)


def _wait(seconds: float, server_pid: int | None) -> None:
    """Sleep ``seconds`` (the tracker's period), but raise :class:`ServerGone` within
    0.25 s of the server's exit."""
    end = time.monotonic() + seconds
    while True:
        if not _server_alive(server_pid):
            raise ServerGone
        left = end - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, 0.25))  # the tracker's own period, not a synchronisation


def run(redis_url: str, maxmemory: str | None = None, cleaning_threshold: int = 80,
        protected_history: float = 180, monitoring_period: float = 30,
        inactive_scan_deletion: int = 24 * 3600, closed_scan_deletion: int = 7 * 24 * 3600,
        cleaning_time_slice: int = 20, iterations: int | None = None,
        server_pid: int | None = None) -> None:
    """The tracker loop (blissdata's ``run`` with the saver-aware tracker).

    With ``server_pid``, it returns when that process (the embedded server) is gone.
    """
    import redis

    from beacon_ipy.scans import bdgaps

    store = bdgaps.data_store(redis_url, track=False)
    r = store._redis
    if maxmemory:
        r.config_set("maxmemory", maxmemory)
        r.config_set("maxmemory-policy", "noeviction")
    max_memory = int(r.config_get("maxmemory")["maxmemory"])
    if not max_memory:
        raise SystemExit("beacon-ipy memory tracker: the server has no maxmemory; give "
                         "--maxmemory (e.g. 512mb)")
    trigger = max_memory * cleaning_threshold // 100
    logging.info("tracking %s: maxmemory %d bytes, cleaning above %d %%, protected history "
                 "%s s, period %s s", redis_url, max_memory, cleaning_threshold,
                 protected_history, monitoring_period)
    tracker = _tracker_class()(store, inactive_scan_deletion, closed_scan_deletion,
                               cleaning_time_slice)
    from blissdata.redis_engine.memory_tracker import NoFreeableMemoryError

    n = 0
    try:
        while iterations is None or n < iterations:
            n += 1
            try:
                tracker.update()
                used = r.info("memory")["used_memory"]
            except redis.exceptions.OutOfMemoryError:
                logging.critical("Redis is out of memory, retrying")
                _wait(0.2, server_pid)
                continue
            except redis.exceptions.ConnectionError:
                if server_pid is None:
                    raise
                _wait(0.5, server_pid)  # the server is going away (or busy): look again
                continue
            if used >= trigger:
                try:
                    tracker.reclaim_memory(protected_history)
                except NoFreeableMemoryError:
                    logging.warning("nothing freeable yet (protected history %s s)",
                                    protected_history)
                    _wait(min(1.0, monitoring_period), server_pid)
            else:
                _wait(monitoring_period, server_pid)
    except ServerGone:
        logging.info("the server (pid %s) is gone: the tracker exits", server_pid)


def option_parser() -> argparse.ArgumentParser:
    """The tracker's command line (BLISS's memory_tracker options, plus beacon-ipy's)."""
    parser = argparse.ArgumentParser(prog="python -m beacon_ipy.scans.memory",
                                     description="blissdata's memory tracker, saver-aware")
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--maxmemory", help="set the server's maxmemory (e.g. 512mb)")
    parser.add_argument("--cleaning-threshold", type=int, default=80)
    parser.add_argument("--protected-history", type=float, default=180)
    parser.add_argument("--monitoring-period", type=float, default=30)
    parser.add_argument("--cleaning-time-slice", type=int, default=20)
    parser.add_argument("--inactive-scan-deletion", type=int, default=24 * 3600)
    parser.add_argument("--closed-scan-deletion", type=int, default=7 * 24 * 3600)
    parser.add_argument("--server-pid", type=int, help="exit when this process is gone")
    parser.add_argument("--pid-file", help="removed at exit if it still names this process")
    parser.add_argument("--log-file", help="log here (rotated at 1 MB), not stdout")
    parser.add_argument("--detach", action="store_true",
                        help="fork into a new session, print the tracker's pid, return")
    return parser


def _detach() -> None:
    """Fork: the parent prints the child's pid and exits; the child leads a new session."""
    import os

    pid = os.fork()
    if pid:
        print(pid, flush=True)
        os._exit(0)
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)


def _forget_pid_file(path: str | None) -> None:
    import json
    import os

    if not path:
        return
    try:
        with open(path) as fh:
            if json.load(fh).get("pid") == os.getpid():
                os.unlink(path)
    except (OSError, ValueError, AttributeError):
        pass


def main(argv: list[str] | None = None) -> int:
    import atexit
    import signal
    from logging.handlers import RotatingFileHandler

    args = option_parser().parse_args(argv)
    if args.detach:
        _detach()
    handler = (RotatingFileHandler(args.log_file, maxBytes=2**20, backupCount=1)
               if args.log_file else logging.StreamHandler(sys.stdout))
    logging.basicConfig(format="%(asctime)s %(levelname)s: %(message)s", level=logging.INFO,
                        handlers=[handler])
    atexit.register(_forget_pid_file, args.pid_file)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        run(args.redis_url, args.maxmemory, args.cleaning_threshold, args.protected_history,
            args.monitoring_period, args.inactive_scan_deletion, args.closed_scan_deletion,
            args.cleaning_time_slice, server_pid=args.server_pid)
    except KeyboardInterrupt:
        return 0
    except Exception:
        logging.exception("the memory tracker failed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
