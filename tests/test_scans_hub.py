"""A runner never freezes the greenlets of its thread (docs/scan_data.md, gaps 5 and 7).

- A backlog is read in blocks of about ``bdgaps.READ_BUDGET`` bytes, not blissdata's
  100 entries per stream (80 MB of spectra at 100 per entry: a 0.5–2 s stall).
- The runner's own requests go over gevent sockets, so waiting for a busy Redis lets
  other greenlets run, in a plain (unpatched) process.
- A producer in a process patched with ``patch_all(thread=False)`` (the beacon kernel)
  keeps its liveness key: its heartbeat thread has a connection of its own.
"""

from __future__ import annotations

import subprocess
import sys
import time

import gevent
import gevent.event
import numpy as np
import redis
from peers.scan_helpers import new_session, wait_for

from beacon_ipy.scans import ScanConsumer, ScanRunner, StreamDescription, bdgaps, create_scan

SPECTRUM = 2048
PER_PUSH = 100  # one blissdata entry = 100 spectra of 2048 float32 = 800 KiB
PUSHES = 30


class Blocks(ScanConsumer):
    def __init__(self):
        self.blocks: list[np.ndarray] = []
        self.ended = gevent.event.Event()

    def new_data(self, scan, stream, block):
        self.blocks.append(np.array(block.data))

    def end_scan(self, scan, end):
        self.ended.set()


def test_a_backlog_is_read_in_blocks_within_the_read_budget():
    rng = np.random.default_rng(1)
    pushed = [rng.random((PER_PUSH, SPECTRUM)).astype("float32") for _ in range(PUSHES)]
    with create_scan(new_session(), {"type": "timescan"},
                     [StreamDescription.array("mca:spectrum", "float32", (SPECTRUM,))]) as scan:
        for block in pushed:
            scan.push({"mca:spectrum": block})
    consumer = Blocks()  # the whole scan (24 MB) waits in Redis: a backlog
    ScanRunner(consumer, scan_key=scan.key, timeout=60).run()
    assert consumer.ended.is_set()
    entry_bytes = PER_PUSH * SPECTRUM * 4
    most = max(1, bdgaps.READ_BUDGET // entry_bytes) * PER_PUSH
    sizes = [len(b) for b in consumer.blocks]
    assert sizes[0] == PER_PUSH, "the first read asks for one entry (sizes unknown yet)"
    assert max(sizes) == most, f"blocks of {sizes}: none may exceed {most} points"
    np.testing.assert_array_equal(np.concatenate(consumer.blocks), np.concatenate(pushed))


def test_reads_stay_at_one_entry_until_entry_sizes_are_known():
    scan = create_scan(new_session(), {"type": "timescan"},
                       [StreamDescription.array("mca:spectrum", "float32", (SPECTRUM,))])
    scan.start()
    try:
        stream = bdgaps.load_scan(bdgaps.reading_store(), scan.key).streams["mca:spectrum"]
        group = bdgaps.bounded_cursor_group({"mca:spectrum": stream})
        assert group.read(block=False) == {}  # nothing yet: sizes still unknown
        block = np.ones((PER_PUSH, SPECTRUM), dtype="float32")
        for _ in range(20):
            scan.push({"mca:spectrum": block})
        client = redis.Redis.from_url(bdgaps.data_url())
        wait_for(lambda: client.xlen(stream.key) >= 20,  # blissdata's sender writes later
                 what="the 20 entries in Redis")
        sizes = [len(view) for view in group.read(block=False).values()]
        sizes += [len(view) for view in group.read(block=False).values()]
        most = max(1, bdgaps.READ_BUDGET // (PER_PUSH * SPECTRUM * 4))
        assert sizes == [PER_PUSH, most * PER_PUSH]
        assert group.entries_per_read == most
    finally:
        scan.end()


def test_the_runners_requests_let_greenlets_run_while_redis_is_busy(own_data_redis):
    """CLIENT PAUSE makes Redis hold every reply, as a long pipelined batch of a producer
    does; the runner's store must wait for it cooperatively (the process is unpatched)."""
    assert not gevent.monkey.is_anything_patched()
    runner = ScanRunner(ScanConsumer(), session=new_session(), url=own_data_redis.url)
    try:
        runner.step(block=False)  # started: its store is open
        admin = redis.Redis.from_url(own_data_redis.url)
        admin.execute_command("CLIENT", "PAUSE", "1500", "ALL")
        t0 = time.monotonic()
        request = gevent.spawn(runner.store._redis.get, "anything")
        ticks = 0
        while not request.ready():
            gevent.sleep(0.01)
            ticks += 1
        waited = time.monotonic() - t0
        request.get()
        assert waited > 1.0, "the pause did not hold the request (test set-up)"
        assert ticks >= 50, f"{ticks} ticks of 10 ms in {waited:.2f} s: the hub was frozen"
    finally:
        runner.close()


PATCHED_PRODUCER = r"""
import gevent.monkey
gevent.monkey.patch_all(thread=False)
import logging, sys, time
logging.basicConfig(level=logging.WARNING)
import redis
from beacon_ipy.scans import StreamDescription, create_scan

url, session = sys.argv[1], sys.argv[2]
client = redis.Redis.from_url(url)
with create_scan(session, {"type": "timescan"}, [StreamDescription.scalar("c")],
                 redis_url=url, heartbeat=0.05) as scan:
    missing = 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < 1.5:  # 30 heartbeats; the key's TTL is 5 of them
        scan.push({"c": 1.0})
        missing += not client.exists(scan.liveness_key)
        gevent.sleep(0.01)
print(missing)
"""


def test_a_producer_keeps_its_liveness_key_in_a_kernel_style_gevent_process(data_redis):
    out = subprocess.run([sys.executable, "-c", PATCHED_PRODUCER, data_redis.url,
                          new_session()], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "liveness refresh failed" not in out.stderr, out.stderr[-2000:]
    assert out.stdout.strip() == "0", "the liveness key expired while the scan ran"
