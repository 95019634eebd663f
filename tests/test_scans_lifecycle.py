"""Scan lifecycle on a real Redis: expiry, trimming, holds, dead producers, bad entries."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest
from peer import Peer
from peers.scan_helpers import Collector, new_session, wait_for

from beacon_ipy import get_session_node
from beacon_ipy.connection import get_redis
from beacon_ipy.scans import (
    ChannelSpec,
    LimaSpec,
    ProducerConnectionError,
    ScanDeclaredDeadError,
    ScanExpiredError,
    create_scan,
)
from beacon_ipy.scans.keys import SessionKeys


def quick_scan(session, npoints=3, **options):
    scan = create_scan(session, {"type": "ct"}, [ChannelSpec("c")], **options)
    scan.start()
    scan.push("c", np.arange(npoints, dtype=float))
    scan.end()
    return scan


def test_scan_expires_after_its_end_and_reading_it_says_why():
    session = new_session()
    scan = quick_scan(session, expire_after_end=0.3)
    node = get_session_node(session).get_scan(scan.scan_nb)
    channel = node.nodes["c"]
    assert 0 < node.ttl() <= 0.3
    wait_for(lambda: not node.exists(), timeout=5, what="expiry")
    for read in (lambda: node.state, lambda: list(node.walk_events()),
                 lambda: get_session_node(session).get_scan(scan.scan_nb),
                 lambda: node.scan_nb and node.end):
        with pytest.raises(ScanExpiredError, match=r"no longer in Redis.*expire_after_end.*hold"):
            read()
    with pytest.raises(ScanExpiredError):
        channel.get()
    assert get_session_node(session).scans() == []


def test_running_scan_ttl_covers_heartbeat_plus_expiry():
    session = new_session()
    scan = create_scan(session, {"type": "ct"}, [ChannelSpec("c")], expire_after_end=5,
                       heartbeat=2)
    scan.start()
    node = get_session_node(session).get_scan(scan.scan_nb)
    assert 5 < node.ttl() <= 7
    scan.end()
    assert 4 < node.ttl() <= 5


def test_session_keeps_a_bounded_number_of_scans_and_holds_win():
    session = new_session()
    first = quick_scan(session, max_scans=2)
    get_session_node(session).get_scan(first.scan_nb).hold("saver", ttl=60)
    scans = [quick_scan(session, max_scans=2) for _ in range(4)]
    snode = get_session_node(session)
    # at each start the oldest ended, unheld scans go until max_scans remain (the running
    # one and held ones count): the held oldest scan survives, at the expense of others
    assert snode.scan_numbers() == [first.scan_nb, scans[-1].scan_nb]
    with pytest.raises(ScanExpiredError):
        snode.get_scan(scans[0].scan_nb)
    snode.get_scan(first.scan_nb).release("saver")
    newest = quick_scan(session, max_scans=2)
    assert snode.scan_numbers() == [scans[-1].scan_nb, newest.scan_nb]
    redis = get_redis()
    assert not redis.exists(SessionKeys(session).scan(scans[0].scan_nb).data)


def test_hold_keeps_an_ended_scan_until_released():
    session = new_session()
    scan = quick_scan(session, expire_after_end=0.3)
    node = get_session_node(session).get_scan(scan.scan_nb)
    assert node.hold("saver-1", ttl=60) > 50
    assert set(node.holds()) == {"saver-1"}
    deadline = time.monotonic() + 0.6
    wait_for(lambda: time.monotonic() > deadline, what="past expire_after_end")
    assert node.exists() and node.nodes["c"].get().tolist() == [0.0, 1.0, 2.0]
    node.release("saver-1")
    assert node.ttl() <= 0.3
    wait_for(lambda: not node.exists(), timeout=5, what="expiry after release")
    with pytest.raises(ScanExpiredError, match="cannot hold it"):
        node.hold("late")


def test_hold_has_its_own_safety_ttl():
    session = new_session()
    scan = quick_scan(session, expire_after_end=0.2)
    node = get_session_node(session).get_scan(scan.scan_nb)
    node.hold("crashed-saver", ttl=0.6)
    assert 0.4 < node.ttl() <= 0.6
    wait_for(lambda: not node.exists(), timeout=5, what="expiry of a lapsed hold")


def test_session_hold_applies_to_existing_and_new_scans():
    session = new_session()
    old = quick_scan(session, expire_after_end=0.3)
    snode = get_session_node(session)
    assert snode.hold("saver", ttl=60) == 1
    new = quick_scan(session, expire_after_end=0.3)
    snode.release("saver")  # stop holding new scans; existing per-scan holds stay
    later = quick_scan(session, expire_after_end=0.3)
    for s in (old, new):
        assert snode.get_scan(s.scan_nb).holds().keys() == {"saver"}
        assert snode.get_scan(s.scan_nb).ttl() > 50
    assert snode.get_scan(later.scan_nb).holds() == {}
    wait_for(lambda: not snode.get_scan(later.scan_nb).exists() if later.scan_nb in
             snode.scan_numbers() else True, timeout=5, what="unheld scan expiry")
    snode.release("saver", include_scans=True)
    assert snode.get_scan(old.scan_nb).ttl() <= 0.3


def test_refreshing_only_the_session_hold_leaves_released_scans_alone():
    session = new_session()
    snode = get_session_node(session)
    snode.hold("saver", ttl=60)
    saved = quick_scan(session, expire_after_end=30)
    snode.get_scan(saved.scan_nb).release("saver")  # saved: the saver lets it go
    assert snode.hold("saver", ttl=60, existing=False) == 0
    assert snode.get_scan(saved.scan_nb).holds() == {}, "a released scan was held again"
    new = quick_scan(session, expire_after_end=30)  # the session hold still applies
    assert snode.get_scan(new.scan_nb).holds().keys() == {"saver"}
    snode.release("saver", include_scans=True)


def test_dead_producer_ends_walks_with_died():
    session = new_session()
    snode = get_session_node(session)
    scan_walks = []
    session_walk = Collector(lambda s: snode.walk_on_new_events("scan", from_next=True,
                                                                started_event=s), stop_at_end=1)
    peer = Peer("scan_producer.py", session, "0.5", "7")
    try:
        nb = peer.expect("pushed")["scan_nb"]
        scan_walks.append(Collector(lambda s: snode.get_scan(nb).walk_events(started_event=s)))
        scan_walks[0].wait_for(lambda e: e[0] == "NEW_DATA" and e[2].stop == 7, what="data")
        # alive: after twice the heartbeat the walk is still waiting
        deadline = time.monotonic() + 1.0
        wait_for(lambda: time.monotonic() > deadline, what="heartbeat period")
        assert scan_walks[0].events[-1][0] == "NEW_DATA"
        peer.kill()
        killed = time.monotonic()
        events = scan_walks[0].wait(timeout=5)
    finally:
        peer.kill() if peer.proc.poll() is None else None
    assert time.monotonic() - killed < 2.0
    end = events[-1][2]
    assert events[-1][0] == "END_SCAN" and end.reason == "DIED" and end.by == "watchdog"
    data = np.concatenate([d.data for t, n, d in events if t == "NEW_DATA" and n.name == "counter"])
    assert data.tolist() == list(range(7))
    session_events = session_walk.wait(timeout=5)
    assert [str(e[0]) for e in session_events] == ["NEW_NODE", "END_SCAN"]
    assert session_events[-1][2].reason == "DIED"
    assert snode.get_scan(nb).end.reason == "DIED"


def test_live_peer_producer_is_followed_to_its_end():
    session = new_session()
    peer = Peer("scan_producer.py", session, "0.3", "4")
    try:
        nb = peer.expect("pushed")["scan_nb"]
        walk = Collector(lambda s: get_session_node(session).get_scan(nb).walk_events(
            started_event=s))
        deadline = time.monotonic() + 1.0  # > 3 heartbeats: the peer must keep it alive
        wait_for(lambda: time.monotonic() > deadline, what="heartbeats")
        assert peer.request(cmd="end")["ended"]
        events = walk.wait()
    finally:
        peer.close()
    assert events[-1][2].reason == "SUCCESS"


def test_producer_learns_it_was_declared_dead():
    session = new_session()
    scan = create_scan(session, {"type": "ct"}, [ChannelSpec("c")], heartbeat=30)
    scan.start()
    scan.push("c", 1.0)
    node = get_session_node(session).get_scan(scan.scan_nb)
    get_redis().delete(node.keys.alive)  # as if the heartbeat had lapsed
    events = list(node.walk_events(timeout=10))
    assert events[-1][2].reason == "DIED"
    with pytest.raises(ScanDeclaredDeadError, match="heartbeat lapsed"):
        scan.end()


def test_malformed_entries_are_skipped_with_a_warning(caplog):
    session = new_session()
    scan = create_scan(session, {"type": "ct"},
                       [ChannelSpec("c"), ChannelSpec("v", "int16", (3,)), LimaSpec("cam")])
    scan.start()
    scan.push({"c": [0.0, 1.0], "v": [[1, 2, 3], [4, 5, 6]]})
    redis = get_redis()
    key = scan.scan_keys.data
    garbage = [
        {"nothing": "here"},                               # no type
        {"t": "weird"},                                    # unknown type
        {"t": "data", "9:2": b"12345678"},                 # undeclared node
        {"t": "data", "0:2": b"123"},                      # not a whole float64
        {"t": "data", "0:5": np.float64(5).tobytes()},     # gap in the index
        {"t": "data", "zz": b"1"},                         # bad field name
        {"t": "data", "2:0": b"not json"},                 # bad image references
        {"t": "data", "0:2": np.float64(2).tobytes(), "1:2": b"\x00"},  # one bad field
        {"t": "node", "i": "x"},                           # bad declaration
    ]
    for fields in garbage:
        redis.xadd(key, fields)
    scan.push({"c": 2.0, "v": [7, 8, 9]})
    scan.push_images("cam", "/f.h5", "/d", 0, 2)
    scan.end()
    with caplog.at_level(logging.WARNING, logger="beacon_ipy.scans"):
        events = list(get_session_node(session).get_scan(scan.scan_nb).walk_events(count=3))
    warnings = [r.getMessage() for r in caplog.records if "malformed" in r.getMessage()]
    assert len(warnings) == len(garbage)
    assert any("undeclared node #9" in w for w in warnings)
    assert any("expected 2" in w for w in warnings)
    data = {}
    for t, n, d in events:
        if t == "NEW_DATA":
            data.setdefault(n.name, []).append(d)
    assert np.concatenate([d.data for d in data["c"]]).tolist() == [0.0, 1.0, 2.0]
    assert np.concatenate([d.data for d in data["v"]]).tolist() == [[1, 2, 3], [4, 5, 6],
                                                                   [7, 8, 9]]
    assert [r.index for d in data["cam"] for r in d.references] == [0, 1]
    assert events[-1][0] == "END_SCAN"
    node = get_session_node(session).get_scan(scan.scan_nb)
    assert node.nodes["c"].get().tolist() == [0.0, 1.0, 2.0]  # the index skips them too


def test_session_walk_survives_a_redis_restart(own_redis):
    session = new_session()
    snode = get_session_node(session, own_redis.url)
    walk = Collector(lambda s: snode.walk_on_new_events("scan", from_next=True,
                                                        started_event=s), stop_at_end=2)
    quick_scan(session, redis_url=own_redis.url)
    walk.wait_for(lambda e: e[0] == "END_SCAN", what="first scan")
    own_redis.restart()  # all data lost (no persistence), clients disconnected
    quick_scan(session, redis_url=own_redis.url)  # numbering restarts: scan 1 again
    events = walk.wait(timeout=20)
    assert [str(e[0]) for e in events] == ["NEW_NODE", "END_SCAN", "NEW_NODE", "END_SCAN"]
    assert events[-1][2].reason == "SUCCESS"


def test_producer_reports_a_scan_lost_in_a_restart(own_redis):
    session = new_session()
    scan = create_scan(session, {"type": "ct"}, [ChannelSpec("c")], redis_url=own_redis.url,
                       heartbeat=0.3)
    scan.start()
    scan.push("c", 1.0)
    own_redis.restart()

    def push_fails():
        try:
            scan.push("c", 2.0)
        except ScanExpiredError as exc:
            return exc

    exc = wait_for(push_fails, timeout=10, what="the producer to notice")
    assert "vanished while running" in str(exc)


def test_producer_says_clearly_when_redis_is_gone_and_recovers(own_redis):
    session = new_session()
    scan = create_scan(session, {"type": "ct"}, [ChannelSpec("c")], redis_url=own_redis.url,
                       heartbeat=30)
    scan.start()
    scan.push("c", 1.0)
    own_redis.kill()  # a crash: nothing answers any more
    with pytest.raises(ProducerConnectionError, match="lost the connection to Redis"):
        for i in range(2, 200):  # pipelined: the break shows within a few pushes
            scan.push("c", float(i))
    # still a clear error (not an AttributeError) while the server stays away
    with pytest.raises(ProducerConnectionError, match="kept and will be resent"):
        scan.push("c", 500.0)


def test_pipelined_pushes_survive_dropped_connections(caplog):
    session = new_session()
    scan = create_scan(session, {"type": "ct"}, [ChannelSpec("c"), ChannelSpec("d", "int64")])
    scan.start()
    walk = Collector(lambda s: get_session_node(session).get_scan(scan.scan_nb).walk_events(
        started_event=s))
    killed = 0
    for i in range(600):
        scan.push({"c": float(i), "d": i})
        if i % 150 == 75:  # with pushes in flight: every connection but this one is cut
            killed += get_redis().client_kill_filter(_type="normal", skipme=True)
    scan.end()
    events = walk.wait()
    assert killed >= 3
    for name, dtype in (("c", float), ("d", int)):
        blocks = [d for t, n, d in events if t == "NEW_DATA" and n.name == name]
        data = np.concatenate([b.data for b in blocks])
        assert data.tolist() == list(map(dtype, range(600)))  # each point once, in order
    assert events[-1][2].counts == {"c": 600, "d": 600}
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if "malformed" in m]
    assert any("producer lost its Redis connection" in m for m in messages)


def test_scans_carry_a_unique_id_distinct_from_their_number(own_redis):
    session = new_session()
    first = quick_scan(session, redis_url=own_redis.url)
    snode = get_session_node(session, own_redis.url)
    uid = snode.get_scan(first.scan_nb).uid
    assert uid == first.uid and len(uid) == 32
    own_redis.restart()  # numbering restarts: the new scan 1 is another scan
    again = quick_scan(session, redis_url=own_redis.url)
    assert again.scan_nb == first.scan_nb
    assert get_session_node(session, own_redis.url).get_scan(again.scan_nb).uid != uid
