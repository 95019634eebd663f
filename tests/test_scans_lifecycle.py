"""The runner's rules on a real Redis: consumer calls, dead producers, deletion, trimmed data,
lost connections, stopping, and blissdata's gaps (bdgaps)."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import gevent
import numpy as np
import pytest
from gevent import subprocess
from peers.scan_helpers import new_session, wait_for

from beacon_ipy.scans import (
    CallbackConsumer,
    ScanConsumer,
    ScanDataTrimmedError,
    ScanRunner,
    ScanState,
    StreamDescription,
    bdgaps,
    create_scan,
)

PEERS = Path(__file__).parent / "peers"
S = StreamDescription


class Recorder(ScanConsumer):
    """Records every call as a tuple."""

    def __init__(self, skip: set[int] = frozenset()):
        self.calls: list[tuple] = []
        self.skip = skip
        self.ended = gevent.event.Event()

    def new_scan(self, scan):
        self.calls.append(("new_scan", scan.number))
        if scan.number in self.skip:
            return False
        return None

    def new_stream(self, scan, stream):
        self.calls.append(("new_stream", scan.number, stream.name, stream.kind.value))

    def new_data(self, scan, stream, block):
        self.calls.append(("new_data", scan.number, stream.name, block.start, block.stop))

    def end_scan(self, scan, end):
        self.calls.append(("end_scan", scan.number, end.reason, end.by))
        self.ended.set()


def start_runner(*consumers, **options) -> tuple[ScanRunner, gevent.Greenlet]:
    started = gevent.event.Event()
    runner = ScanRunner(list(consumers), started_event=started, **options)
    glet = runner.spawn()
    assert started.wait(10), "runner did not start"
    return runner, glet


def test_runner_calls_consumers_in_order_and_new_scan_false_skips_a_scan():
    session = new_session()
    everything, skipper = Recorder(), Recorder(skip={1})
    runner, glet = start_runner(everything, skipper, session=session)
    for _ in range(2):
        with create_scan(session, {"type": "ct"}, [S.scalar("a"), S.spectrum("b", 4)]) as scan:
            for i in range(5):
                scan.push({"a": float(i), "b": np.full(4, i, "float64")})
    wait_for(lambda: sum(c[0] == "end_scan" for c in everything.calls) == 2, what="2 ends")
    runner.stop()
    glet.get(timeout=5)
    for number in (1, 2):
        calls = [c for c in everything.calls if c[1] == number]
        assert calls[:3] == [("new_scan", number), ("new_stream", number, "a", "0d"),
                             ("new_stream", number, "b", "1d")]
        assert calls[-1] == ("end_scan", number, "SUCCESS", "producer")
        for name in "ab":
            blocks = [c[3:] for c in calls if c[0] == "new_data" and c[2] == name]
            assert blocks[0][0] == 0 and blocks[-1][1] == 5
            assert all(a[1] == b[0] for a, b in zip(blocks, blocks[1:], strict=False))
    assert [c for c in skipper.calls if c[1] == 1] == [("new_scan", 1)]
    assert ("end_scan", 2, "SUCCESS", "producer") in skipper.calls


def test_runner_needs_one_target_and_consumers():
    with pytest.raises(ValueError, match="exactly one of session= or scan_key="):
        ScanRunner(Recorder())
    with pytest.raises(TypeError, match="ScanConsumer instances"):
        ScanRunner([object()], session="x")


def test_beacon_producer_that_dies_ends_with_died_by_its_liveness_key():
    session = new_session()
    rec = Recorder()
    runner, glet = start_runner(rec, session=session)
    proc = subprocess.Popen([sys.executable, str(PEERS / "scan_producer.py"), session, "0.1",
                             "7"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = json.loads(proc.stdout.readline())
        assert line["event"] == "pushed"
        wait_for(lambda: ("new_data", 1, "counter", 0, 7) in rec.calls or any(
            c[0] == "new_data" and c[2] == "counter" and c[4] == 7 for c in rec.calls),
            what="the 7 points")
        t0 = time.monotonic()
        proc.kill()
        assert rec.ended.wait(10)
        assert time.monotonic() - t0 < 3  # TTL 5 heartbeats = 0.5 s, checked every 0.5 s
    finally:
        proc.kill()
        proc.wait()
    runner.stop()
    glet.get(timeout=5)
    assert rec.calls[-1] == ("end_scan", 1, "DIED", "watchdog")


def test_live_beacon_producer_is_followed_to_its_end():
    session = new_session()
    rec = Recorder()
    runner, glet = start_runner(rec, session=session)
    proc = subprocess.Popen([sys.executable, str(PEERS / "scan_producer.py"), session, "0.1",
                             "3"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert json.loads(proc.stdout.readline())["event"] == "pushed"
        # alive for many TTLs (the heartbeat thread keeps the key), then ends normally
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            assert not rec.ended.is_set()
            gevent.sleep(0.05)
        proc.stdin.write(json.dumps({"cmd": "end"}) + "\n")
        proc.stdin.flush()
        assert rec.ended.wait(10)
        proc.stdin.write(json.dumps({"cmd": "exit"}) + "\n")
        proc.stdin.flush()
        proc.wait(10)
    finally:
        proc.kill()
    runner.stop()
    glet.get(timeout=5)
    assert rec.calls[-1] == ("end_scan", 1, "SUCCESS", "producer")


def test_foreign_producer_idle_past_the_limit_ends_with_died(tmp_path):
    session = new_session()
    rec = Recorder()
    url = bdgaps.data_url()
    bdgaps.data_store()  # initialised for the plain blissdata peer
    runner, glet = start_runner(rec, session=session, idle_limit=1.0)
    proc = subprocess.Popen([sys.executable, str(PEERS / "blissdata_producer.py"), url,
                             session, "1", "6", str(tmp_path), "--hang"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert "hanging" in json.loads(proc.stdout.readline())
        assert rec.ended.wait(10)
    finally:
        proc.kill()
        proc.wait()
    runner.stop()
    glet.get(timeout=5)
    assert rec.calls[-1] == ("end_scan", 1, "DIED", "watchdog")
    mot = [(c[3], c[4]) for c in rec.calls if c[0] == "new_data" and c[2] == "axis:mot"]
    assert mot[0][0] == 0 and mot[-1][1] == 3, mot  # what came before is delivered...
    assert all(a[1] == b[0] for a, b in zip(mot, mot[1:], strict=False)), mot  # ...in order


def test_deleted_scan_ends_with_deletion():
    session = new_session()
    rec = Recorder()
    runner, glet = start_runner(rec, session=session)
    scan = create_scan(session, {"type": "ct"}, [S.scalar("a")])
    scan.start()
    scan.push("a", [1.0, 2.0])
    wait_for(lambda: any(c[0] == "new_data" for c in rec.calls), what="data")
    bdgaps.data_store().delete_scan(scan.key, force=True)
    assert rec.ended.wait(10)
    runner.stop()
    glet.get(timeout=5)
    assert rec.calls[-1] == ("end_scan", scan.scan_nb, "DELETION", "deleted")


def test_trimmed_data_is_a_clear_error_naming_scan_and_loss():
    session = new_session()
    scan = create_scan(session, {"type": "ct"}, [S.scalar("a")])
    scan.start()
    for i in range(10):
        scan.push("a", np.arange(i * 10, i * 10 + 10, dtype=float))
    scan.end()
    store = bdgaps.data_store()
    stream_key = scan.scan.streams["a"].key
    # what BLISS's memory tracker does: trim the oldest entries (here, points 0..39)
    store._redis.xtrim(stream_key, minid="40-0", approximate=False)
    with pytest.raises(ScanDataTrimmedError) as info:
        ScanRunner(Recorder(), scan_key=scan.key).run()
    msg = str(info.value)
    assert f"#{scan.scan_nb}" in msg and "points 0 to 39 of stream 'a'" in msg
    assert "40 point(s) lost" in msg
    # a consumer that handles the loss gets the rest
    lost, data = [], []
    ScanRunner(CallbackConsumer(new_data=lambda s, st, b: data.append(b.data.copy()),
                                data_lost=lambda s, st, e: lost.append((e.start, e.stop))),
               scan_key=scan.key).run()
    assert lost == [(0, 40)]
    np.testing.assert_array_equal(np.concatenate(data), np.arange(40, 100.0))


def test_stop_from_another_thread_wakes_a_waiting_runner():
    session = new_session()
    runner, glet = start_runner(Recorder(), session=session)
    gevent.sleep(0.05)
    t0 = time.monotonic()
    threading.Thread(target=runner.stop).start()
    glet.get(timeout=5)
    assert time.monotonic() - t0 < 0.4


def test_runner_reconnects_after_a_redis_restart(own_redis):
    session = new_session()
    url = own_redis.url
    rec = Recorder()
    with create_scan(session, {"type": "ct"}, [S.scalar("a")], redis_url=url) as scan:
        scan.push("a", 1.0)
    runner, glet = start_runner(rec, session=session, url=url, from_next=False)
    assert rec.ended.wait(10)
    rec.ended.clear()
    own_redis.restart()  # the connection drops; the restarted server is empty
    bdgaps.ensure_initialised(bdgaps.data_url(url))
    with create_scan(session, {"type": "ct"}, [S.scalar("a")], redis_url=url,
                     number=7) as scan:
        scan.push("a", 2.0)
    assert rec.ended.wait(10)  # the runner came back and found the new scan
    assert not glet.ready()
    runner.stop()
    glet.get(timeout=5)
    assert rec.calls[-1] == ("end_scan", 7, "SUCCESS", "producer")


UNPATCHED = """
import sys, time, gevent
from beacon_ipy.scans import ScanConsumer, ScanRunner
assert not gevent.monkey.is_anything_patched()
runner = ScanRunner(ScanConsumer(), session=sys.argv[1])
glet = runner.spawn()
ticks = 0
t0 = time.monotonic()
while time.monotonic() - t0 < 1.0:
    gevent.sleep(0.01)
    ticks += 1
runner.stop()
glet.get(timeout=5)
print(ticks)
"""


def test_an_unpatched_process_keeps_its_greenlets_running():
    proc = subprocess.run([sys.executable, "-c", UNPATCHED, new_session()],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout.strip()) >= 50  # ~100 ticks of 10 ms in 1 s: never frozen


IMPORT_ORDER = """
import blissdata.streams.event_stream as es
from gevent import monkey
monkey.patch_all(thread=False)
from beacon_ipy.scans import bdgaps
bdgaps.data_store()
print(es.RedisSink.__name__)
"""


def test_blissdata_imported_before_patching_gets_the_gevent_sender():
    proc = subprocess.run([sys.executable, "-c", IMPORT_ORDER], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "DualStageGeventSink"


def test_data_store_initialises_a_non_empty_database_over_resp2(own_redis):
    from redis import Redis

    Redis.from_url(own_redis.url).set("someone:else", b"1")
    url = bdgaps.data_url(own_redis.url)
    assert url.endswith("protocol=2")
    store = bdgaps.data_store(own_redis.url)
    # redis-py 8 speaks RESP3 by default, where blissdata's search fails (KeyError: 0)
    with create_scan("s", {"type": "ct"}, [S.scalar("a")], redis_url=own_redis.url) as scan:
        scan.push("a", 1.0)
    _, keys = store.search_existing_scans(session="s")
    assert keys == [scan.key]
    assert Redis.from_url(own_redis.url).get("someone:else") == b"1"


def test_refresh_reloads_a_scan_loaded_before_its_streams_were_visible():
    from blissdata.streams.default import Stream

    store = bdgaps.data_store()
    writer = store.create_scan({"name": "ct", "number": 1, "data_policy": "no_policy",
                                "session": new_session()})
    reader = store.load_scan(writer.key)  # at CREATED: its JSON has no streams
    writer.create_stream(Stream.make_definition("a", "float64"))
    writer.prepare()
    # the race: Scan._load read the JSON before PREPARED and the state after it
    state_key = bdgaps.state_stream_key(reader)
    reader._last_entry_id = store._redis.xrevrange(state_key, count=1)[0][0].decode()
    reader._state = ScanState.PREPARED
    assert reader.streams == {} and reader.update(block=False) is False  # blissdata stays stuck
    fresh, changed = bdgaps.refresh(store, reader)
    assert changed and fresh.state == ScanState.PREPARED and list(fresh.streams) == ["a"]
    writer.start()
    writer.stop()
    writer.close()
