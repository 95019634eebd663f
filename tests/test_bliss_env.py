"""The real-BLISS test environment and peer work on their own (BLISS <-> BLISS).

Interoperability tests of beacon_ipy against BLISS are only meaningful if the BLISS side
is itself right; these tests prove it with two real BLISS 2.4 peers on the session's
Redis, using only ``tests/bliss_env.py`` and ``tests/peers/bliss_peer.py``. They also
check the cached-build machinery (atomic, locked, rebuilt when half-built) with a cheap
stand-in build, and the JSON value codec shared by tests and peers.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import numpy
import pytest
from bliss_env import (  # noqa: F401  (bliss_python_fixture provides the bliss_python fixture)
    MARKER,
    BlissEnvError,
    bliss_python_fixture,
    ensure_built,
)
from peer import Peer
from peers.jsoncodec import decode, dumps, encode, loads

TESTS_DIR = Path(__file__).resolve().parent


@pytest.fixture
def name(request) -> str:
    """A channel name no other test (or earlier run on the same server) uses."""
    return f"test_bliss_env:{request.node.name}:{uuid.uuid4().hex[:8]}"


@pytest.fixture
def peers(bliss_python):
    """Two real BLISS peers, A and B, started in parallel."""
    with ExitStack() as stack:
        started = [stack.enter_context(Peer("bliss_peer.py", python=bliss_python))
                   for _ in range(2)]
        for peer in started:
            ready = peer.expect("ready", timeout=60)
            assert ready["bliss"] == "2.4.0", ready
        yield started


def read_event(peer: Peer, event: str, name: str, timeout: float = 10.0) -> dict:
    """The next ``event`` about channel ``name`` from ``peer`` (others are skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        msg = peer.expect(event, timeout=max(deadline - time.monotonic(), 0.01))
        if msg.get("name") == name:
            return msg


# --- BLISS <-> BLISS through the session's Redis --------------------------------------------

@pytest.mark.bliss
def test_value_held_by_one_bliss_peer_is_read_by_another(peers, name):
    a, b = peers
    a.request(cmd="channel", name=name, value=42)
    b.request(cmd="channel", name=name)
    assert b.request(cmd="get", name=name)["value"] == 42


@pytest.mark.bliss
def test_callback_fires_in_idle_peer_on_other_peers_set(peers, name):
    a, b = peers
    a.request(cmd="channel", name=name, value=0)
    a.request(cmd="callback", name=name)
    b.request(cmd="channel", name=name)
    assert b.request(cmd="get", name=name)["value"] == 0
    b.request(cmd="set", name=name, value=5)
    # A receives no command meanwhile: the callback proves its listener runs while idle.
    assert read_event(a, "callback", name)["value"] == 5
    b.request(cmd="set", name=name, value="six")
    assert read_event(a, "callback", name)["value"] == "six"


@pytest.mark.bliss
def test_event_channel_batch_arrives_complete_and_in_order(peers, name):
    a, b = peers
    b.request(cmd="event_channel", name=name)
    b.request(cmd="event_callback", name=name)
    a.request(cmd="event_channel", name=name)
    posted = [*range(1000), {"k": [1, 2]}, "last"]
    assert a.request(cmd="post", name=name, values=posted)["posted"] == len(posted)
    batches = []
    while sum(map(len, batches)) < len(posted):
        batches.append(read_event(b, "events", name)["values"])
    assert [v for batch in batches for v in batch] == posted
    assert len(batches) < len(posted)  # BLISS sent them batched, not one per message


@pytest.mark.bliss
def test_numpy_array_and_nested_dict_round_trip(peers, name):
    a, b = peers
    value = {"nested": {"list": [1, 2.5, "x"], "tuple": (1, (2, 3)), "none": None},
             "image": numpy.arange(12, dtype=numpy.float32).reshape(3, 4),
             3: b"\x00bytes"}
    a.request(cmd="channel", name=name, value=encode(value))
    a.request(cmd="callback", name=name)
    b.request(cmd="channel", name=name)
    got = decode(b.request(cmd="get", name=name)["value"])
    assert got.keys() == value.keys()
    assert got["nested"] == value["nested"]
    assert got[3] == value[3]
    assert got["image"].dtype == numpy.float32 and got["image"].shape == (3, 4)
    numpy.testing.assert_array_equal(got["image"], value["image"])

    # (native byte order: numpy's protocol-4 pickle turns ">f8" into native float64)
    array = numpy.arange(-6, 6, dtype=numpy.int16).reshape(2, 2, 3)
    b.request(cmd="set", name=name, value=encode(array))
    received = decode(read_event(a, "callback", name)["value"])
    assert received.dtype == array.dtype and received.shape == array.shape
    numpy.testing.assert_array_equal(received, array)


@pytest.mark.bliss
def test_default_value_when_nobody_holds_the_channel(bliss_python, name):
    with Peer("bliss_peer.py", python=bliss_python) as a:
        a.expect("ready", timeout=60)
        a.request(cmd="channel", name=name, default_value={"d": [1, 2]}, timeout=5)
        reply = a.request(cmd="get", name=name)
        assert reply["value"] == {"d": [1, 2]}
        # Answered by the query round trip, not by running into the 5 s timeout.
        assert reply["elapsed"] < 2.5, reply


@pytest.mark.bliss
def test_a_bliss_default_is_held_and_answered_to_another_bliss(peers, name):
    """The seed between two real BLISS processes: B's ``Channel(name)`` reads A's default."""
    a, b = peers
    a.request(cmd="channel", name=name, default_value=42)
    assert a.request(cmd="get", name=name)["value"] == 42
    b.request(cmd="channel", name=name, default_value="b's own default")
    assert b.request(cmd="get", name=name)["value"] == 42


@pytest.mark.bliss
def test_peer_reports_errors_and_keeps_serving(bliss_python, name):
    with Peer("bliss_peer.py", python=bliss_python) as a:
        a.expect("ready", timeout=60)
        with pytest.raises(RuntimeError, match="no Channel"):
            a.request(cmd="get", name=name)
        with pytest.raises(RuntimeError, match="unknown command"):
            a.request(cmd="no_such_command")
        a.request(cmd="channel", name=name, value=1)
        assert a.request(cmd="get", name=name)["value"] == 1


# --- the JSON codec shared by tests and peers -----------------------------------------------

def test_jsoncodec_round_trips_what_plain_json_loses():
    value = {"a": numpy.arange(6, dtype="<i2").reshape(2, 3), "t": (1, [2, (3,)]),
             (1, 2): "tuple key", 7: b"raw", "np": numpy.float64(1.5),
             "tagged": {"__tuple__": 1}, "empty": numpy.zeros((0, 3))}
    got = loads(dumps(value))
    assert json.loads(dumps(value))  # it is JSON
    assert got["t"] == (1, [2, (3,)]) and got[(1, 2)] == "tuple key" and got[7] == b"raw"
    assert got["np"] == 1.5 and got["tagged"] == {"__tuple__": 1}
    for key in ("a", "empty"):
        assert got[key].dtype == value[key].dtype and got[key].shape == value[key].shape
        numpy.testing.assert_array_equal(got[key], value[key])
    with pytest.raises(TypeError, match="cannot encode"):
        encode(object())


# --- the cached, locked, atomic build (with a cheap stand-in for the BLISS build) -----------

def _usable(path: Path) -> bool:
    return (path / "payload").is_file()


def test_ensure_built_builds_once_then_reuses(tmp_path):
    final = tmp_path / "env"
    calls = []

    def build(tmp: Path) -> dict:
        calls.append(tmp)
        assert not final.exists()  # built aside, not in place
        tmp.mkdir()
        (tmp / "payload").write_text("ok")
        return {"built": True}

    assert ensure_built(final, build, _usable, log=lambda m: None) == final
    assert ensure_built(final, build, _usable, log=lambda m: None) == final
    assert len(calls) == 1 and calls[0].name.startswith("env.tmp-")
    assert json.loads((final / MARKER).read_text()) == {"built": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["env", "env.lock"]


def test_ensure_built_replaces_half_built_and_leftovers(tmp_path):
    final = tmp_path / "env"
    final.mkdir()
    (final / "payload").write_text("but no marker: a half-built env")
    leftover = tmp_path / "env.tmp-99999"
    leftover.mkdir()

    def build(tmp: Path) -> dict:
        tmp.mkdir()
        (tmp / "payload").write_text("new")
        return {}

    ensure_built(final, build, _usable, log=lambda m: None)
    assert (final / "payload").read_text() == "new" and (final / MARKER).is_file()
    assert not leftover.exists()


def test_failed_build_leaves_nothing_and_raises(tmp_path):
    final = tmp_path / "env"

    def build(tmp: Path) -> dict:
        tmp.mkdir()
        (tmp / "payload").write_text("partial")
        raise BlissEnvError("pip exploded")

    with pytest.raises(BlissEnvError, match="pip exploded"):
        ensure_built(final, build, _usable, log=lambda m: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["env.lock"]


_CONCURRENT_BUILDER = """
import sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from bliss_env import ensure_built
final, release = Path(sys.argv[2]), Path(sys.argv[3])

def build(tmp):
    tmp.mkdir()
    with open(final.parent / "builds.log", "a") as log:
        log.write("build\\n")
    (final.parent / "building").touch()
    deadline = time.monotonic() + 30
    while not release.exists():  # hold the lock until the test says so
        assert time.monotonic() < deadline, "never released"
        time.sleep(0.01)
    (tmp / "payload").write_text("ok")
    return {}

print(ensure_built(final, build, lambda p: (p / "payload").is_file(), log=lambda m: None))
"""


def test_concurrent_processes_build_once(tmp_path):
    final, release = tmp_path / "env", tmp_path / "release"
    args = [sys.executable, "-c", _CONCURRENT_BUILDER, str(TESTS_DIR), str(final), str(release)]
    first = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not (tmp_path / "building").exists():
        assert time.monotonic() < deadline and first.poll() is None, "first builder never started"
        time.sleep(0.01)
    second = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    release.touch()
    outputs = [proc.communicate(timeout=60)[0].strip() for proc in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0]
    assert outputs == [str(final), str(final)]
    assert (tmp_path / "builds.log").read_text() == "build\n"


def test_env_override_must_be_an_executable(monkeypatch, tmp_path):
    from bliss_env import ENV_PYTHON, bliss_python

    monkeypatch.setenv(ENV_PYTHON, str(tmp_path / "nope"))
    with pytest.raises(BlissEnvError, match=ENV_PYTHON):
        bliss_python()
    monkeypatch.setenv(ENV_PYTHON, sys.executable)
    assert bliss_python() == sys.executable
