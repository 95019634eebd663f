"""The cooperative socket of beacon-ipy's Redis connections (connection/client.py).

Its ``sendall`` tries one non-blocking ``send`` before falling back to gevent's own
(``CooperativeSocket``). These tests drive it with real redis-servers (unix socket and
TCP) and payloads far larger than a socket buffer, so that writes are partial and must
wait; with a server that stops reading (timeout) and one killed in the middle of a write
(clean error, then a working reconnection); and across processes in both gevent modes.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import uuid

import gevent
import gevent.socket
import pytest
import redis
from peer import Peer, cmd
from peers import jsoncodec
from waiting import wait_for

from beacon_ipy.channels import Channel
from beacon_ipy.connection import new_client, new_connection
from beacon_ipy.connection.client import CooperativeSocket, cooperative_socket
from beacon_ipy.connection.private import PrivateRedis, server_args, wait_until_up

BIG = 48 << 20  # far more than any socket buffer: every write of it is partial


def big_payload(size: int = BIG) -> bytes:
    """``size`` bytes that differ along their length (a misplaced chunk shows)."""
    block = hashlib.sha256(b"beacon-ipy").digest() * (1 << 15)  # 1 MiB
    return b"".join(i.to_bytes(4, "little") + block[4:] for i in range(size >> 20))


class TcpRedis(PrivateRedis):
    """A private redis-server that also listens on a TCP port of 127.0.0.1."""

    port = 0

    def start(self, timeout: float = 10.0) -> TcpRedis:
        if not self.port:  # a free port, kept across restarts
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                self.port = probe.getsockname()[1]
        args = server_args(self.program, self.socket_path, self.workdir, port=self.port,
                           logfile=self.workdir / "redis.log")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until_up(self.socket_path, self.proc, timeout)
        return self

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"


@pytest.fixture(params=["unix", "tcp"])
def server(request, tmp_path):
    """A redis-server of this test's own, reached over a unix socket or TCP."""
    srv = (PrivateRedis if request.param == "unix" else TcpRedis)(tmp_path).start()
    yield srv
    if srv.proc is not None:
        os.kill(srv.proc.pid, signal.SIGCONT)  # in case a test left it stopped
    srv.close()


def test_cooperative_socket_wraps_plain_and_gevent_sockets():
    """Plain sockets (unpatched process) and gevent's (patched) both become ours."""
    for make in (socket.socketpair, gevent.socket.socketpair):
        a, b = make()
        a.settimeout(3.5)
        fd = a.fileno()
        wrapped = cooperative_socket(a)
        assert isinstance(wrapped, CooperativeSocket)
        assert (wrapped.fileno(), wrapped.gettimeout()) == (fd, 3.5)
        assert cooperative_socket(wrapped) is wrapped
        wrapped.sendall(b"hello")
        wrapped.sendall(memoryview(b"--world--")[2:7])
        wrapped.sendall(b"")
        assert b.recv(64) == b"helloworld"
        wrapped.setblocking(False)  # timeout 0: gevent's own sendall, unchanged
        wrapped.sendall(b"non-blocking")
        assert b.recv(64) == b"non-blocking"
        wrapped.close()
        b.close()


def test_sendall_of_non_byte_buffers_counts_bytes():
    """A buffer of 4-byte items is sent whole (its length counts bytes, not items)."""
    import array

    a, b = gevent.socket.socketpair()
    wrapped = cooperative_socket(a)
    wrapped.settimeout(5)
    data = array.array("i", range(1 << 20))  # 4 MiB: partial, then waits for the reader
    reader = gevent.spawn(lambda: b"".join(iter(lambda: b.recv(1 << 20), b"")))
    wrapped.sendall(data)
    wrapped.close()
    assert reader.get(timeout=10) == data.tobytes()
    b.close()


def test_big_payload_written_in_parts_reaches_the_server_intact(server):
    """SET of 48 MiB: partial writes that wait cooperatively; GET returns the same bytes."""
    payload = big_payload()
    conn = new_connection(server.url, socket_timeout=20)
    conn.connect()
    ticks = []

    def tick():
        while True:
            ticks.append(1)
            gevent.sleep(0)

    ticker = gevent.spawn(tick)
    try:
        conn.send_command("SET", "big", payload)
        during_write = len(ticks)
        assert conn.read_response() == b"OK"
    finally:
        ticker.kill()
    # The write waited for the server to drain the socket, and the hub ran meanwhile.
    assert during_write > 0
    client = new_client(server.url, socket_timeout=20)
    assert client.strlen("big") == BIG
    assert client.get("big") == payload
    conn.disconnect()


def test_write_times_out_when_the_server_stops_reading(server):
    """A server that reads nothing: the write gives up after the socket timeout."""
    conn = new_connection(server.url, socket_timeout=0.5)
    conn.connect()
    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        with pytest.raises(redis.TimeoutError, match="[Tt]imeout writing"):
            conn.send_command("SET", "big", big_payload())
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
    conn.connect()  # the connection was dropped; a new one works at once
    conn.send_command("PING")
    assert conn.read_response() in (b"PONG", "PONG")
    conn.disconnect()


def test_server_killed_mid_write_then_a_clean_reconnection(server):
    """The server dies while a big write waits: a ConnectionError, then reconnection."""
    conn = new_connection(server.url, socket_timeout=20)
    conn.connect()
    client = new_client(server.url)
    client.set("small", b"before")
    os.kill(server.proc.pid, signal.SIGSTOP)  # stops reading: the write below must wait
    failure = []
    started = []

    def write():
        started.append(True)
        try:
            conn.send_command("SET", "big", big_payload())
        except redis.ConnectionError as exc:
            failure.append(exc)

    writer = gevent.spawn(write)
    # The writer runs until its write blocks (the server reads nothing): then we resume.
    wait_for(lambda: started, what="the writer to start")
    assert not writer.dead, f"the write ended although the server read nothing: {failure}"
    server.kill()  # SIGKILL, while stopped: the server never reads the rest
    writer.join(timeout=10)
    assert writer.dead and len(failure) == 1, failure
    server.start()
    assert client.get("small") is None  # a new server (no persistence), reached again
    client.set("small", b"after")
    assert client.get("small") == b"after"
    conn.connect()
    conn.send_command("SET", "big", b"x" * 1000)
    assert conn.read_response() == b"OK"
    conn.disconnect()


@pytest.mark.parametrize("patched", [False, True], ids=["plain", "patched"])
def test_big_channel_value_across_processes(patched):
    """An 8 MiB value both ways between this process and a peer (either gevent mode)."""
    name = f"big-{uuid.uuid4().hex[:8]}"
    theirs = os.urandom(8 << 20)
    ours = os.urandom(8 << 20)
    with Peer("channel_peer.py", patch=patched) as peer:
        assert peer.expect("ready")["patched"] is patched
        cmd(peer, cmd="channel", name=name, value=theirs)  # held once subscribed
        assert Channel(name).value == theirs  # the peer's answer: a partial write there
        mine = Channel(f"{name}-mine", value=ours)  # ours, written in parts from here
        assert jsoncodec.decode(cmd(peer, cmd="get", name=f"{name}-mine")["value"]) == ours
        assert mine.value == ours
