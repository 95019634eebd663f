"""``BEACON_HOST`` against a REAL ``beacon-server`` (BLISS 2.4), with real BLISS processes.

The Beacon fixture (``tests/beacon_env.py``) runs a real ``beacon-server`` with its two Redis
servers. Every process here, BLISS's and beacon-ipy's, gets only ``BEACON_HOST``: what they
share proves that beacon-ipy asks Beacon for the same servers as BLISS does.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from peer import Peer

from beacon_ipy.connection.datastore import data_store_version, server_modules

pytestmark = pytest.mark.bliss
PEERS = Path(__file__).parent / "peers"


def beacon_ipy(server, *args: str, **env: str) -> subprocess.CompletedProcess:
    """Run the ``beacon-ipy`` CLI in a process that has only ``BEACON_HOST``."""
    return subprocess.run([sys.executable, "-m", "beacon_ipy.cli", *args], capture_output=True,
                          text=True, timeout=60, env=server.env(**env))


def reply(peer: Peer, timeout: float = 30.0) -> dict:
    return peer.expect("reply", timeout=timeout)


def test_where_reports_both_servers_from_beacon(beacon_server):
    done = beacon_ipy(beacon_server, "where", "--json")
    assert done.returncode == 0, done.stderr
    rows = {row["role"]: row for row in json.loads(done.stdout)}
    assert rows["settings"]["url"] == beacon_server.settings_url
    assert rows["data"]["url"] == beacon_server.data_url
    for row in rows.values():
        assert row["source"] == "BEACON_HOST" and row["state"] == "answers"
        assert beacon_server.beacon_host in row["why"]
    text = beacon_ipy(beacon_server, "where").stdout.splitlines()
    assert len(text) == 2 and all("Beacon server at localhost:" in line for line in text)


def test_beacon_host_may_name_beacons_unix_socket(beacon_server):
    """BLISS accepts BEACON_HOST=host:/path/to/beacon.sock; so does beacon-ipy."""
    uds = beacon_server.uds_path()
    done = beacon_ipy(beacon_server, "where", "--json", BEACON_HOST=f"localhost:{uds}")
    assert done.returncode == 0, done.stderr
    urls = [row["url"] for row in json.loads(done.stdout)]
    assert urls == [beacon_server.settings_url, beacon_server.data_url]


def test_data_role_is_the_beacon_data_redis_with_modules(beacon_server):
    code = ("from beacon_ipy.connection import resolve_url, explain\n"
            "print(resolve_url(role='data'), explain(role='data').source)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env=beacon_server.env(), check=True)
    url, source = done.stdout.split()
    assert (url, source) == (beacon_server.data_url, "BEACON_HOST")
    assert {"ReJSON", "search"} <= server_modules(url)
    assert data_store_version(url) == "1"  # beacon-server initialised it for blissdata


def test_bliss_and_beacon_ipy_share_a_channel_both_ways(beacon_server, monkeypatch):
    name = f"test_beacon:{uuid.uuid4().hex[:8]}"
    for var in ("BEACON_REDIS_URL", "BEACON_DATA_REDIS_URL"):  # peers inherit os.environ
        monkeypatch.delenv(var, raising=False)
    with Peer("bliss_beacon_peer.py", python=beacon_server.bliss_python,
              env=beacon_server.env()) as bliss, \
            Peer("channel_peer.py", env=beacon_server.env()) as ours:
        bliss.expect("ready", timeout=90)
        ours.expect("ready", timeout=30)
        bliss.send(cmd="where")
        where = reply(bliss)
        assert (where["settings"], where["data"]) == (beacon_server.settings_url,
                                                      beacon_server.data_url)
        # BLISS -> beacon-ipy: BLISS holds a value, a fresh beacon-ipy channel reads it.
        bliss.send(cmd="channel", name=name, value={"from": "bliss", "n": 1})
        reply(bliss)
        bliss.send(cmd="callback", name=name)
        reply(bliss)
        ours.send(cmd="get", name=name)
        assert reply(ours)["value"] == {"from": "bliss", "n": 1}
        # beacon-ipy -> BLISS: our set reaches BLISS's callback and its value.
        ours.send(cmd="set", name=name, value=[2, "from beacon-ipy"])
        reply(ours)
        assert bliss.expect("callback", timeout=10)["value"] == [2, "from beacon-ipy"]
        bliss.send(cmd="get", name=name)
        assert reply(bliss)["value"] == [2, "from beacon-ipy"]
        for peer in (bliss, ours):
            peer.send(cmd="exit")
            reply(peer)


def test_beacon_answer_is_asked_once_per_process(beacon_server):
    """Many channels, one Beacon round trip: the answer is cached for the process."""
    code = ("import beacon_ipy.connection.beacon as b\n"
            "calls = []\n"
            "real = b.ask_beacon\n"
            "b.ask_beacon = lambda *a, **k: calls.append(1) or real(*a, **k)\n"
            "from beacon_ipy.channels import Channel\n"
            "from beacon_ipy.connection import resolve_url\n"
            "chans = [Channel(f'test_beacon_once:{i}', default_value=i) for i in range(20)]\n"
            "resolve_url(role='data')\n"
            "print(len(calls), sum(c.value for c in chans))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env=beacon_server.env())
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", str(sum(range(20)))]


def test_real_bliss_ascan_lands_in_the_data_redis_beacon_ipy_finds(beacon_server, monkeypatch):
    """A real BLISS ``ascan`` (library mode, only BEACON_HOST) publishes with blissdata; the
    data Redis beacon-ipy resolves through the same Beacon holds that scan, equal to BLISS's
    own reading of it."""
    from blissdata.redis_engine.store import DataStore

    from beacon_ipy.connection import blissdata_url, forget_beacon_answers, resolve_url

    done = subprocess.run([beacon_server.bliss_python, str(PEERS / "bliss_ascan.py"), "5"],
                          capture_output=True, text=True, timeout=240, env=beacon_server.env())
    assert done.returncode == 0, done.stderr[-3000:]
    bliss_side = json.loads(done.stdout.strip().splitlines()[-1])
    for var in ("BEACON_REDIS_URL", "BEACON_DATA_REDIS_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("BEACON_HOST", beacon_server.beacon_host)
    forget_beacon_answers()
    try:
        url = resolve_url(role="data")
    finally:
        forget_beacon_answers()
    store = DataStore(blissdata_url(url))
    _, keys = store.search_existing_scans(session="demo")
    scans = [store.load_scan(key) for key in keys]
    scan = next(s for s in scans if s.number == bliss_side["scan_number"])
    ours = {name: stream[:].tolist() for name, stream in scan.streams.items()}
    assert ours == bliss_side["data"]
    assert len(ours["axis:roby"]) == 6
