"""One memory tracker per embedded data server, started on first use, with no set-up.

A ``beacon-server`` starts blissdata's memory tracker next to its data Redis. beacon-ipy's
embedded server has nobody to do that, so the scan layer does it: the first time a process
uses the data role on the embedded server (:func:`~beacon_ipy.scans.bdgaps.data_store`), it
makes sure a tracker runs for it (:func:`ensure_tracker`):

- **one per server**: under a file lock in the server's runtime directory, a tracker whose
  record (``memory-tracker.pid``: its pid and the server's pid) names the running server
  is kept; otherwise one is started, detached (its own session, not a child of anyone), so
  racing processes start exactly one and it outlives the kernel that started it;
- **dies with the server**: it polls the server's pid and exits (removing its record) when
  the server is gone; ``beacon-ipy server stop`` also ends it at once;
- **bounded**: the server has a ``maxmemory`` (``BEACON_IPY_MAXMEMORY``, see
  :mod:`beacon_ipy.connection.embedded`); a server started by an older beacon-ipy without
  one gets it here. ``BEACON_IPY_MAXMEMORY=0`` means no bound and no tracker;
- the tracker is :mod:`.memory`'s (blissdata's, saver-aware) with BLISS's defaults;
  ``BEACON_IPY_TRACKER_OPTIONS`` (e.g. ``"--protected-history 60"``) passes options;
- a Redis configured by the user or named by Beacon is left alone (Beacon runs BLISS's own
  tracker; anyone else runs ``python -m beacon_ipy.scans.memory`` themselves).

Its log is ``memory-tracker.log`` in the runtime directory (rotated at 1 MB).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import filelock

from beacon_ipy.connection import RedisUnavailableError, embedded

OPTIONS_ENV = "BEACON_IPY_TRACKER_OPTIONS"
LOCK_NAME = "memory-tracker.lock"
LOG_NAME = "memory-tracker.log"
CHECK_PERIOD = 5.0  # a process re-checks that its server has a tracker at most this often
_next_check: dict[str, float] = {}


def tracker_options() -> list[str]:
    """Tracker options from ``BEACON_IPY_TRACKER_OPTIONS``, checked here (a bad value is an
    error in the process that starts the tracker, not a tracker dying unseen)."""
    from beacon_ipy.scans.memory import option_parser

    options = shlex.split(os.environ.get(OPTIONS_ENV, ""))
    parser = option_parser()
    try:
        parser.parse_args(["--redis-url", "unix:///x", *options])
    except SystemExit:
        raise RedisUnavailableError(
            f"{OPTIONS_ENV}={os.environ.get(OPTIONS_ENV)!r} is not a valid set of memory "
            f"tracker options; 'python -m beacon_ipy.scans.memory --help' lists them") from None
    return options


def _record(rdir: Path) -> dict:
    try:
        return json.loads((rdir / embedded.TRACKER_PID_NAME).read_text())
    except (OSError, ValueError):
        return {}


def _serving(rdir: Path, server_pid: int) -> int | None:
    """The pid of a live tracker registered for the server ``server_pid``."""
    pid = embedded.tracker_pid(rdir)
    if pid is not None and _record(rdir).get("server_pid") == server_pid:
        return pid
    return None


def ensure_tracker(url: str) -> int | None:
    """Make sure the embedded server behind ``url`` has its memory tracker; its pid.

    ``None`` (and nothing done) when ``url`` is not the embedded server's, the server is
    unbounded (``BEACON_IPY_MAXMEMORY=0``) or not running. Cheap when called often: a
    process looks again at most every :data:`CHECK_PERIOD` s.
    """
    base = url.partition("?")[0]
    now = time.monotonic()
    if now < _next_check.get(base, 0.0):
        return None
    _next_check[base] = now + CHECK_PERIOD
    if not embedded.is_embedded_url(base):
        return None
    info = embedded.status()
    if not info.running or info.pid is None:
        return None
    rdir = info.runtime_dir
    pid = _serving(rdir, info.pid)
    if pid is not None:
        return pid
    with filelock.FileLock(str(rdir / LOCK_NAME), timeout=30):
        pid = _serving(rdir, info.pid)  # another process may have started it meanwhile
        if pid is not None:
            return pid
        if not _bounded(info):
            return None
        return _start(info, base)


def _bounded(info: embedded.ServerInfo) -> bool:
    """True if the server has a maxmemory (set now, if it has none and one is wanted)."""
    import redis

    bound = embedded.memory_bound(info)
    if bound is None:
        return False
    if bound[0]:
        return True
    wanted = embedded.configured_maxmemory()
    if not wanted:
        return False
    client = redis.Redis(unix_socket_path=str(info.socket_path), socket_timeout=5)
    try:
        client.config_set("maxmemory", wanted)
        client.config_set("maxmemory-policy", "noeviction")
    finally:
        client.close()
    return True


def _start(info: embedded.ServerInfo, url: str) -> int:
    rdir = info.runtime_dir
    args = [sys.executable, "-m", "beacon_ipy.scans.memory", "--redis-url", url,
            "--server-pid", str(info.pid), "--log-file", str(rdir / LOG_NAME),
            "--pid-file", str(rdir / embedded.TRACKER_PID_NAME), "--detach",
            *tracker_options()]
    # --detach: the child forks the tracker into its own session, prints its pid and
    # exits, so the tracker is nobody's child (no zombie, not killed with a kernel).
    proc = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=60, close_fds=True)
    try:
        pid = int(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise RedisUnavailableError(
            f"could not start the memory tracker of the embedded server ({url}): "
            f"{(proc.stderr or proc.stdout).strip()[-500:]}") from None
    record = {"pid": pid, "server_pid": info.pid, "url": url}
    tmp = rdir / (embedded.TRACKER_PID_NAME + ".tmp")
    tmp.write_text(json.dumps(record))
    tmp.replace(rdir / embedded.TRACKER_PID_NAME)
    return pid
