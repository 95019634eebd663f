"""Scan data on a real Redis (blissdata 2.x): producer -> seed walks (order, replay, filters)."""

from __future__ import annotations

import time

import gevent
import numpy as np
import pytest
from peers.scan_helpers import Collector, new_session

from beacon_ipy import get_session_node
from beacon_ipy.scans import (
    ChannelData,
    EventType,
    ImageData,
    ImageFiles,
    ScanEnd,
    ScanState,
    ScanStateError,
    StopHandler,
    create_scan,
)
from beacon_ipy.scans import StreamDescription as S

CAM_FILES = ImageFiles("/nowhere/cam_%04d.h5", "/entry/data", 100)
CHANNELS = [S.scalar("axis:mot1", unit="mm"), S.scalar("diode", "int32"),
            S.spectrum("mca", 8, "float32"), S.image("cam", (4, 6), "uint16", CAM_FILES)]


def publish(session, npoints=10, block=1, info=None, channels=CHANNELS, end="SUCCESS",
            pause=0.0, **options):
    """Publish one scan; returns (publisher, pushed data per channel)."""
    scan_info = {"type": "ascan", "title": "test", "npoints": npoints, "count_time": 0.1}
    scan_info.update(info or {})
    scan = create_scan(session, scan_info, channels, **options)
    scan.start()
    for i in range(0, npoints, block):
        n = min(block, npoints - i)
        idx = np.arange(i, i + n)
        scan.push({"axis:mot1": idx * 0.5, "diode": idx * 3,
                   "mca": np.repeat(idx[:, None], 8, axis=1).astype(np.float32)})
        scan.push_images("cam", count=n)
        if pause:
            gevent.sleep(pause)
    if end:
        scan.end(end, {"positioners_end": {"mot1": 4.5}})
    return scan


def by_node(events, kind="NEW_DATA"):
    out: dict[str, list] = {}
    for event_type, node, data in events:
        if event_type == kind:
            out.setdefault(node.name, []).append(data)
    return out


def check_scan_events(events, npoints):
    """Per scan: NEW_NODE before data, data contiguous and exact, END_SCAN last."""
    kinds = [e[0] for e in events]
    assert kinds[-1] == EventType.END_SCAN
    assert kinds.count(EventType.END_SCAN) == 1
    seen_nodes = set()
    for event_type, node, _ in events:
        if event_type == "NEW_NODE":
            seen_nodes.add(node.name)
        elif event_type == "NEW_DATA":
            assert node.name in seen_nodes, f"data of {node.name} before its NEW_NODE"
    assert seen_nodes >= {"axis:mot1", "diode", "mca", "cam"}
    blocks = by_node(events)
    for name, expected in [("axis:mot1", np.arange(npoints) * 0.5),
                           ("diode", np.arange(npoints) * 3)]:
        assert [b.start for b in blocks[name]] == [0] + [b.stop for b in blocks[name][:-1]]
        np.testing.assert_array_equal(np.concatenate([b.data for b in blocks[name]]), expected)
    mca = np.concatenate([b.data for b in blocks["mca"]])
    assert mca.shape == (npoints, 8) and mca.dtype == np.float32
    np.testing.assert_array_equal(mca[:, 3], np.arange(npoints))
    refs = [r for b in blocks["cam"] for r in b.references]
    assert [r.index for r in refs] == list(range(npoints))
    assert all(isinstance(b, ChannelData) for n in ("diode", "mca") for b in blocks[n])
    assert all(isinstance(b, ImageData) for b in blocks["cam"])
    end = events[-1][2]
    assert isinstance(end, ScanEnd) and end.by == "producer" and end.info["end_reason"] == "SUCCESS"
    assert end.counts == {"axis:mot1": npoints, "diode": npoints, "mca": npoints, "cam": npoints}
    return end


def test_scan_walk_event_order_and_content():
    session = new_session()
    walker = Collector(lambda started: get_session_node(session).walk_on_new_events(
        from_next=True, started_event=started), stop_at_end=1)
    scan = publish(session, npoints=25, block=3, pause=0.001)
    events = walker.wait()
    assert events[0][0] == "NEW_NODE" and events[0][1].type == "scan"
    assert events[0][1].name == scan.name == f"{scan.scan_nb}_ascan"
    end = check_scan_events(events, 25)
    assert end.reason == "SUCCESS" and end.info["positioners_end"] == {"mot1": 4.5}
    # and the scan's own walk replays the same thing after the end
    replay = list(get_session_node(session).get_scan(scan.scan_nb).walk_events())
    check_scan_events(replay, 25)


def test_end_scan_never_before_data_even_with_small_reads():
    session = new_session()
    scan = create_scan(session, {"type": "timescan"}, [S.scalar("c")])
    scan.start()
    node = get_session_node(session).get_scan(scan.scan_nb)
    walker = Collector(lambda started: node.walk_events(started_event=started))
    for i in range(300):
        scan.push("c", float(i))
    scan.end()  # at once: END is queued right behind 300 unread entries
    events = walker.wait()
    data = np.concatenate([d.data for t, _, d in events if t == "NEW_DATA"])
    np.testing.assert_array_equal(data, np.arange(300.0))
    assert events[-1][0] == "END_SCAN"


def test_scan_info_is_bliss_shaped_json():
    session = new_session()
    info = {"count_time": np.float32(0.25), "npoints": np.int64(7), "nan": float("nan"),
            "arr": np.arange(6, dtype=np.uint16).reshape(2, 3), "tuple": (1, "a"),
            "nested": {"positioners_start": {"mot1": 1.5}}}
    scan = publish(session, npoints=1, info=info)
    got = get_session_node(session).get_scan(scan.scan_nb).info
    # blissdata stores scan_info as JSON: numbers stay numbers, NaN becomes None
    assert got["count_time"] == 0.25 and got["npoints"] == 7 and got["nan"] is None
    assert got["arr"] == [[0, 1, 2], [3, 4, 5]] and got["tuple"] == [1, "a"]
    assert got["scan_nb"] == scan.scan_nb and got["title"] == "test"
    assert got["session_name"] == session and got["end_reason"] == "SUCCESS"
    # completed as BLISS builds it: channels, devices, acquisition chain
    assert got["channels"]["axis:mot1"] == {"device": "axis", "dim": 0, "display_name": "mot1",
                                            "unit": "mm"}
    assert got["channels"]["cam"]["dim"] == 2 and got["devices"]["axis"]["channels"] == [
        "axis:mot1"]
    chain = got["acquisition_chain"]["timer"]
    assert chain["master"]["scalars"] == ["axis:mot1"] and chain["scalars"] == ["diode"]
    assert chain["spectra"] == ["mca"] and chain["images"] == ["cam"]


def test_unstorable_scan_info_is_refused_before_anything_is_published():
    session = new_session()
    with pytest.raises(TypeError, match="not JSON serializable"):
        create_scan(session, {"bad": object()})
    assert get_session_node(session).scans() == []


def test_replay_versus_from_next():
    session = new_session()
    first = publish(session, npoints=3)
    node = get_session_node(session)
    replay = Collector(lambda s: node.walk_on_new_events("scan", from_next=False, started_event=s),
                       stop_at_end=2)
    fresh = Collector(lambda s: node.walk_on_new_events("scan", from_next=True, started_event=s),
                      stop_at_end=1)
    second = publish(session, npoints=3)
    assert replay.wait() and fresh.wait()
    assert replay.kinds() == [("NEW_NODE", first.name), ("END_SCAN", first.name),
                              ("NEW_NODE", second.name), ("END_SCAN", second.name)]
    assert fresh.kinds() == [("NEW_NODE", second.name), ("END_SCAN", second.name)]


@pytest.mark.parametrize("include_filter, expected_types", [
    ("scan", {"scan"}),
    (["channel"], {"channel"}),
    (("scan", "lima"), {"scan", "lima"}),
    (lambda node: node.type == "scan" or node.name == "diode", {"scan", "channel"}),
])
def test_filters(include_filter, expected_types):
    session = new_session()
    node = get_session_node(session)
    walker = Collector(lambda s: node.walk_on_new_events(include_filter, from_next=True,
                                                         started_event=s, timeout=10))
    publish(session, npoints=4)
    if "scan" in expected_types:
        walker.wait_for(lambda e: e[0] == "END_SCAN", what="END_SCAN")
    else:
        walker.wait_for(lambda e: e[0] == "NEW_DATA" and e[2].stop == 4, what="last data")
    walker.greenlet.kill()
    assert {e[1].type for e in walker.events} == expected_types
    if callable(include_filter):
        assert {e[1].name for e in walker.events if e[1].type == "channel"} == {"diode"}


def test_bad_filter_is_refused():
    with pytest.raises(ValueError, match="unknown node types"):
        next(get_session_node(new_session()).walk_on_new_events("scans"))


def test_concurrent_scans_in_one_session():
    session = new_session()
    node = get_session_node(session)
    walker = Collector(lambda s: node.walk_on_new_events(from_next=True, started_event=s),
                       stop_at_end=3)
    glets = [gevent.spawn(publish, session, npoints=15 + k, block=2, pause=0.002)
             for k in range(3)]
    scans = [g.get(timeout=20) for g in glets]
    events = walker.wait()
    assert sorted(s.scan_nb for s in scans) == sorted({s.scan_nb for s in scans})
    per_scan: dict[int, list] = {}
    for e in events:
        scan = e[1] if e[1].type == "scan" else e[1].scan
        per_scan.setdefault(scan.scan_nb, []).append(e)
    assert set(per_scan) == {s.scan_nb for s in scans}
    for scan in scans:
        evs = per_scan[scan.scan_nb]
        assert evs[0][0] == "NEW_NODE" and evs[0][1].type == "scan"
        check_scan_events(evs[1:], scan.count("diode"))


def test_scan_numbers_are_unique_under_concurrent_creation():
    session = new_session()
    glets = [gevent.spawn(create_scan, session, {"type": "ct"}) for _ in range(20)]
    scans = [g.get(timeout=10) for g in glets]
    assert sorted(s.scan_nb for s in scans) == list(range(1, 21))
    assert len({s.key for s in scans}) == 20  # blissdata keys: unique beyond numbers


def test_listener_joining_mid_scan():
    session = new_session()
    scan = create_scan(session, {"type": "ascan"}, CHANNELS)
    scan.start()
    for i in range(5):
        scan.push({"axis:mot1": i * 0.5, "diode": i * 3, "mca": np.full(8, i, np.float32)})
        scan.push_images("cam")
    node = get_session_node(session)
    session_walk = Collector(lambda s: node.walk_on_new_events(["scan", "channel", "lima"],
                                                               started_event=s), stop_at_end=1)
    scan_walk = Collector(lambda s: node.get_scan(scan.scan_nb).walk_events(started_event=s))
    session_walk.wait_for(lambda e: e[0] == "NEW_DATA" and e[1].name == "diode", what="replay")
    for i in range(5, 12):
        scan.push({"axis:mot1": i * 0.5, "diode": i * 3, "mca": np.full(8, i, np.float32)})
        scan.push_images("cam")
    scan.end("SUCCESS", {"positioners_end": {"mot1": 4.5}})
    for walk in (session_walk, scan_walk):
        events = walk.wait()
        if events[0][1].type == "scan" and events[0][0] == "NEW_NODE":
            events = events[1:]
        check_scan_events(events, 12)


def test_channel_get_and_lima_references(tmp_path):
    session = new_session()
    scan = publish(session, npoints=23, block=4)
    node = get_session_node(session).get_scan(scan.scan_nb)
    diode = node.nodes["diode"]
    assert len(diode) == 23 and diode.dtype == np.int32 and diode.shape == ()
    np.testing.assert_array_equal(diode.get(), np.arange(23) * 3)
    np.testing.assert_array_equal(diode.get(5, 13), np.arange(5, 13) * 3)
    np.testing.assert_array_equal(diode.get(-3), np.arange(20, 23) * 3)
    assert diode.get(30, 40).shape == (0,)
    mca = node.nodes["mca"].get(7, 9)
    assert mca.shape == (2, 8) and mca[1, 0] == 8
    cam = node.get_node("cam")
    refs = cam.get_references(2, 5)
    assert [(r.file, r.path, r.index) for r in refs] == [
        ("/nowhere/cam_0000.h5", "/entry/data", i) for i in (2, 3, 4)]
    assert node.nodes["axis:mot1"].unit == "mm" and node.nodes["mca"].shape == (8,)
    assert node.nodes["cam"].stream.files == CAM_FILES
    with pytest.raises(KeyError, match="no node 'nope'"):
        node.get_node("nope")


def test_get_follows_a_running_scan():
    session = new_session()
    scan = create_scan(session, {"type": "timescan"}, [S.scalar("c")])
    scan.start()
    node = get_session_node(session).get_scan(scan.scan_nb).nodes["c"]
    assert len(node) == 0 and node.get().shape == (0,)
    scan.push("c", [1.0, 2.0])
    scan.flush()  # pushes are pipelined
    np.testing.assert_array_equal(node.get(), [1.0, 2.0])
    scan.push("c", 3.0)
    scan.flush()
    np.testing.assert_array_equal(node.get(1), [2.0, 3.0])
    scan.end()


def test_stop_handler_ends_a_blocked_walk_at_once_and_others_keep_running():
    session = new_session()
    scan = create_scan(session, {"type": "timescan"}, [S.scalar("c")], heartbeat=10)
    scan.start()
    node = get_session_node(session)
    handler = StopHandler()
    scan_walk = Collector(lambda s: node.get_scan(scan.scan_nb).walk_events(
        stop_handler=handler, started_event=s))
    session_walk = Collector(lambda s: node.walk_on_new_events(
        stop_handler=handler, started_event=s))
    ticks = []
    ticker = gevent.spawn(lambda: [ticks.append(gevent.sleep(0.01)) for _ in range(20)])
    ticker.join(5)
    assert len(ticks) == 20  # the hub was not frozen by two blocked walks
    scan_walk.wait_for(lambda e: e[0] == "NEW_NODE", what="NEW_NODE")
    t0 = time.monotonic()
    handler.stop()
    scan_walk.wait(5)
    session_walk.wait(5)
    assert time.monotonic() - t0 < 0.4  # woken, not timed out (walks block up to 0.5 s)
    assert [e[0] for e in scan_walk.events] == ["NEW_NODE"]
    scan.end()


def test_timeout_ends_a_walk_quietly():
    session = new_session()
    scan = create_scan(session, {"type": "timescan"}, [S.scalar("c")])
    scan.start()
    t0 = time.monotonic()
    events = list(get_session_node(session).get_scan(scan.scan_nb).walk_events(timeout=0.3))
    assert 0.25 < time.monotonic() - t0 < 1.0
    assert [e[0] for e in events] == ["NEW_NODE"]
    scan.end()


def test_producer_refuses_bad_blocks_clearly():
    session = new_session()
    scan = create_scan(session, {"type": "ct"}, CHANNELS)
    with pytest.raises(ScanStateError, match="call start"):
        scan.push("diode", 1)
    scan.start()
    with pytest.raises(ValueError, match=r"points of shape \(8,\): got a block of shape \(3,\)"):
        scan.push("mca", [1, 2, 3])
    with pytest.raises(TypeError, match="int32: cannot store float64"):
        scan.push("diode", 1.5)
    with pytest.raises(KeyError, match="no stream 'nope'"):
        scan.push("nope", 1)
    with pytest.raises(TypeError, match="use push_images"):
        scan.push("cam", 1)
    scan.push("diode", [1, 2])
    scan.end()
    with pytest.raises(ScanStateError):
        scan.end()
    assert get_session_node(session).get_scan(scan.scan_nb).nodes["diode"].get().tolist() == [1, 2]


def test_context_manager_ends_failure_on_error():
    session = new_session()
    with pytest.raises(RuntimeError, match="boom"):
        with create_scan(session, {"type": "ct"}, [S.scalar("c")]) as scan:
            scan.push("c", 1.0)
            raise RuntimeError("boom")
    node = get_session_node(session).get_scan(scan.scan_nb)
    assert node.state == ScanState.CLOSED and node.end.reason == "FAILURE"
    assert "boom" in node.end.info["error"]
    with pytest.raises(ScanStateError, match="streams are declared before start"):
        scan.add_stream(S.scalar("late"))


def test_push_accepts_points_and_blocks_in_every_form():
    session = new_session()
    with create_scan(session, {"type": "ct"}, [S.scalar("a"), S.spectrum("m", 3, "float32")]) as scan:
        scan.push({"a": 1.0, "m": [1, 2, 3]})                          # one point each
        scan.push({"a": np.array(2.0), "m": np.ones((2, 3), "float32")})  # 0-dim, a block
        scan.push({"a": np.array([3.0, 4.0]), "m": np.zeros((1, 3), "float64")})  # cast
    node = get_session_node(session).get_scan(scan.scan_nb)
    assert node.nodes["a"].get().tolist() == [1.0, 2.0, 3.0, 4.0]
    assert node.nodes["m"].get().shape == (4, 3) and node.nodes["m"].get().dtype == np.float32
