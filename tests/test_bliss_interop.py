"""Interoperability with real BLISS 2.4 processes on the same Redis (separate virtualenv)."""

from __future__ import annotations

import uuid

import numpy
import pytest
from bliss_env import bliss_python_fixture  # noqa: F401  (provides the bliss_python fixture)
from peer import Peer, cmd
from peers import jsoncodec
from waiting import wait_for

from beacon_ipy.channels import Channel, EventChannel

pytestmark = pytest.mark.bliss

NESTED = {"motor": {"position": 1.25, "limits": [-10.0, 10.0], "state": "READY"},
          "counts": numpy.arange(12, dtype=numpy.int32).reshape(3, 4),
          "label": "ascan", "flags": (True, None)}


@pytest.fixture
def bliss(bliss_python):
    with Peer("bliss_peer.py", python=bliss_python) as p:
        p.expect("ready", timeout=60)
        yield p


@pytest.fixture
def name():
    return f"interop-{uuid.uuid4().hex[:10]}"



def assert_nested_equal(a, b):
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], numpy.ndarray):
            numpy.testing.assert_array_equal(a[key], b[key])
            assert a[key].dtype == b[key].dtype
        else:
            assert a[key] == b[key], key


def test_bliss_holds_beacon_reads(bliss, name):
    cmd(bliss, cmd="channel", name=name, value=NESTED)
    assert_nested_equal(Channel(name, default_value="unused").value, NESTED)
    arr = numpy.linspace(0, 1, 2048, dtype=numpy.float32)
    cmd(bliss, cmd="channel", name=f"{name}-arr", value=arr)
    got = Channel(f"{name}-arr").value
    assert got.dtype == numpy.float32
    numpy.testing.assert_array_equal(got, arr)


def test_beacon_holds_bliss_reads(bliss, name):
    Channel(name, value=NESTED)
    cmd(bliss, cmd="channel", name=name)
    reply = cmd(bliss, cmd="get", name=name, timeout=5)
    assert_nested_equal(jsoncodec.decode(reply["value"]), NESTED)
    assert reply["elapsed"] < 2.0


def test_beacon_default_is_held_and_answered_to_bliss(bliss, name):
    """beacon-ipy A falls back to its default; BLISS B's ``Channel(name)`` reads it."""
    ours = Channel(name, default_value=42)
    assert ours.value == 42
    cmd(bliss, cmd="channel", name=name)
    reply = cmd(bliss, cmd="get", name=name, timeout=5)
    assert reply["value"] == 42
    assert reply["elapsed"] < 1.0, "BLISS waited for an answer that never came"
    # Even a BLISS default of its own gives way to the held one (as between two BLISS).
    cmd(bliss, cmd="channel", name=f"{name}-2", default_value="bliss default")
    assert cmd(bliss, cmd="get", name=f"{name}-2")["value"] == "bliss default"
    Channel(f"{name}-3", default_value="ours").value  # noqa: B018
    cmd(bliss, cmd="channel", name=f"{name}-3", default_value="bliss default")
    assert cmd(bliss, cmd="get", name=f"{name}-3")["value"] == "ours"


def test_bliss_default_is_held_and_answered_to_beacon(bliss, name):
    """BLISS A falls back to its default; beacon-ipy B's ``Channel(name)`` reads it."""
    cmd(bliss, cmd="channel", name=name, default_value=42)
    assert cmd(bliss, cmd="get", name=name)["value"] == 42
    assert Channel(name, timeout=5).value == 42
    assert Channel(f"{name}-x", default_value="ours").value == "ours"  # nobody holds it


def test_callbacks_both_ways(bliss, name):
    ch = Channel(name, value=0)
    seen = []
    ch.register_callback(seen.append)
    cmd(bliss, cmd="channel", name=name)
    assert cmd(bliss, cmd="get", name=name)["value"] == 0
    cmd(bliss, cmd="callback", name=name)
    ch.value = {"from": "beacon", "data": numpy.ones(3)}
    got = jsoncodec.decode(bliss.expect("callback")["value"])
    numpy.testing.assert_array_equal(got["data"], numpy.ones(3))
    cmd(bliss, cmd="set", name=name, value="from bliss")
    wait_for(lambda: any(isinstance(v, str) and v == "from bliss" for v in seen),
             what="BLISS's set to reach our callback")
    assert ch.value == "from bliss"


def test_event_channel_both_ways(bliss, name):
    ev = EventChannel(name)
    got = []
    ev.register_callback(got.extend)
    cmd(bliss, cmd="event_channel", name=name)
    cmd(bliss, cmd="event_callback", name=name)
    posted = [f"bliss event {i}" for i in range(1000)] + [numpy.arange(3), {"k": [1, 2]}]
    cmd(bliss, cmd="post", name=name, values=posted)
    wait_for(lambda: len(got) >= len(posted), what="BLISS events")
    assert got[:1000] == posted[:1000]
    numpy.testing.assert_array_equal(got[1000], posted[1000])
    assert got[1001] == {"k": [1, 2]}

    ours = [f"beacon event {i}" for i in range(500)] + [NESTED]
    for e in ours:
        ev.post(e)
    received = []
    while len(received) < len(ours):
        batch = jsoncodec.decode(bliss.expect("events")["values"])
        received += [e for e in batch if not (isinstance(e, str) and e.startswith("bliss"))
                     and not (isinstance(e, numpy.ndarray) or e == {"k": [1, 2]})]
    assert received[:500] == ours[:500]
    assert_nested_equal(received[500], NESTED)
