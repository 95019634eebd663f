"""The embedded server's memory is bounded with zero configuration (real processes).

The embedded server starts with a ``maxmemory`` (policy noeviction, as BLISS's data Redis);
the first process that uses it for scan data starts ONE detached memory tracker (racing
first users included); it trims a scan larger than the bound while a saver holding the
scan (``hold_as``) gets every point; it exits when the server is gone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import gevent
import pytest
from peers.memory_helpers import MAXMEMORY, PER_PUSH, SPECTRA, SlowSaver, push_spectra_paced
from peers.scan_helpers import new_session, wait_for
from redis import Redis

from beacon_ipy.connection import RedisUnavailableError, embedded
from beacon_ipy.connection.address import DATA_ENV_VAR, ENV_VAR
from beacon_ipy.scans import ScanRunner, StreamDescription, create_scan
from beacon_ipy.scans.memory import hold_key
from beacon_ipy.scans.tracker import OPTIONS_ENV, ensure_tracker

FAST = "--cleaning-threshold 50 --protected-history 0 --monitoring-period 0.05 " \
       "--cleaning-time-slice 50"


@pytest.fixture
def embedded_only(tmp_path, monkeypatch):
    """A fresh runtime dir, nothing configured, a 24 MiB bound and a fast tracker."""
    rdir = tmp_path / "rt"
    monkeypatch.setenv(embedded.RUNTIME_DIR_ENV, str(rdir))
    for name in (ENV_VAR, DATA_ENV_VAR, "BEACON_HOST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(embedded.MAXMEMORY_ENV, "24mb")
    monkeypatch.setenv(OPTIONS_ENV, FAST)
    yield rdir
    embedded.stop()


def trackers_of(rdir) -> list[int]:
    """Pids of every tracker process serving the server in ``rdir`` (from /proc)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmd = fh.read().split(b"\0")
            with open(f"/proc/{entry}/stat", "rb") as fh:
                zombie = fh.read().rsplit(b")", 1)[-1].split()[0] == b"Z"
        except OSError:
            continue
        if not zombie and b"beacon_ipy.scans.memory" in cmd and any(
                str(rdir).encode() in part for part in cmd):
            pids.append(int(entry))
    return pids


def test_racing_first_users_start_one_tracker_that_dies_with_the_server(embedded_only):
    rdir = embedded_only
    code = ("import sys; sys.stdin.readline()\n"
            "from beacon_ipy.scans import bdgaps\n"
            "from beacon_ipy.connection import embedded\n"
            "bdgaps.data_store()\n"
            "print(embedded.tracker_pid(), flush=True)\n")
    peers = [subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    for peer in peers:  # released together: they race to start server and tracker
        peer.stdin.write("go\n")
        peer.stdin.flush()
    results = [peer.communicate(timeout=60) for peer in peers]
    assert all(p.returncode == 0 for p in peers), results
    pids = {int(out.strip()) for out, _ in results}
    assert len(pids) == 1 and trackers_of(rdir) == list(pids)
    info = embedded.status()
    record = json.loads((rdir / embedded.TRACKER_PID_NAME).read_text())
    assert record["server_pid"] == info.pid
    assert embedded.memory_bound(info) == (MAXMEMORY, "noeviction")
    status = subprocess.run([sys.executable, "-c", "import sys; from beacon_ipy.cli import "
                             "main; sys.exit(main())", "server", "status", "--json"],
                            capture_output=True, text=True, check=True).stdout
    assert json.loads(status.splitlines()[-1])["memory_tracker_pid"] == pids.pop()
    # the server dies (no 'server stop': a crash): the tracker exits and unregisters
    os.kill(info.pid, signal.SIGKILL)
    wait_for(lambda: not trackers_of(rdir), timeout=10, what="the tracker to exit")
    wait_for(lambda: not (rdir / embedded.TRACKER_PID_NAME).exists(), timeout=5,
             what="the tracker record to go")


def test_embedded_tracker_trims_a_scan_larger_than_the_bound_but_not_a_held_one(
        embedded_only):
    session = new_session()
    saver = SlowSaver()
    started = gevent.event.Event()
    runner = ScanRunner(saver, session=session, hold_as="saver", started_event=started)
    glet = runner.spawn()  # first use of the data role: starts server and tracker
    try:
        assert started.wait(20)
        info = embedded.status()
        client = Redis(unix_socket_path=str(info.socket_path))
        assert wait_for(lambda: trackers_of(embedded_only), what="the tracker")
        scan = create_scan(session, {"type": "timescan"},
                           [StreamDescription.spectrum("mca:spectrum", 2048, "float32")])
        scan.start()
        stream_key = scan.scan.streams["mca:spectrum"].key
        wait_for(lambda: client.hget(hold_key(scan.key, "saver"), stream_key) is not None,
                 what="the saver to hold the scan")
        peak = push_spectra_paced(scan, client)
        scan.end()
        assert saver.ended.wait(60)
        assert saver.next == SPECTRA and saver.lost == []  # never out-raced by trimming
        assert peak < MAXMEMORY
        assert client.xlen(stream_key) < SPECTRA // PER_PUSH  # it was trimmed
    finally:
        runner.stop()
        glet.join(timeout=5)


def test_configured_servers_get_no_tracker_and_bad_settings_are_clear(
        embedded_only, own_data_redis, monkeypatch):
    from beacon_ipy.scans import bdgaps

    bdgaps.data_store(own_data_redis.url)  # a server the user names: left alone
    assert ensure_tracker(own_data_redis.url) is None and not trackers_of(embedded_only)
    assert not embedded.status().running
    monkeypatch.setenv(embedded.MAXMEMORY_ENV, "lots")
    with pytest.raises(RedisUnavailableError, match="BEACON_IPY_MAXMEMORY.*512mb"):
        embedded.configured_maxmemory()
    assert embedded.parse_memory("512mb") == 512 * 2**20
    monkeypatch.setenv(embedded.MAXMEMORY_ENV, "24mb")
    monkeypatch.setenv(OPTIONS_ENV, "--protected-history soon")
    with pytest.raises(RedisUnavailableError, match=OPTIONS_ENV):
        bdgaps.data_store()
