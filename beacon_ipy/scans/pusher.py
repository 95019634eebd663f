"""Pipelined XADDs on a producer's own connection: a push does not wait for its reply.

A push sends its XADD and returns; replies are collected as they arrive (a non-blocking
check once ``COLLECT_FROM`` are outstanding), and waited for when more than ``max_in_flight`` are outstanding
and before anything that must come after the data (the scan's end). So the producer's
rate is not bounded by the Redis round trip, and nothing is delayed: each entry is sent
at once.

If the connection breaks, the unacknowledged entries are resent on a new connection,
except those Redis already has: every data entry's first field (``<node>:<start>``) is
unique in its scan, so the stream's last entry tells where to resume.
"""

from __future__ import annotations

import logging
from collections import deque

import redis

from beacon_ipy.connection import get_redis, new_connection
from beacon_ipy.scans.errors import ScanDataError

MAX_IN_FLIGHT = 256


class ProducerConnectionError(ScanDataError):
    """The producer cannot reach Redis; unacknowledged entries are kept for a retry."""

COLLECT_FROM = 16
log = logging.getLogger("beacon_ipy.scans")


class PipelinedPusher:
    """XADD ``fields`` to ``key`` without waiting; :meth:`flush` waits for all replies."""

    def __init__(self, url: str, key: bytes, max_in_flight: int = MAX_IN_FLIGHT):
        self._url = url
        self._key = key
        self._max = max_in_flight
        self._conn = None
        self._packer = new_connection(url)  # never connected: only packs commands
        self._unacked: deque[tuple[bytes, list]] = deque()  # (first field name, packed)

    def send(self, fields: list) -> None:
        """Send one entry (``fields[2]`` must be its unique ``<node>:<start>`` name)."""
        name = fields[2] if isinstance(fields[2], bytes) else str(fields[2]).encode()
        packed = self._packer.pack_command("XADD", self._key, "*", *fields)
        self._unacked.append((name, packed))
        if self._conn is None and len(self._unacked) > 1:
            self._recover()  # an earlier recovery failed: resend all, this entry included
            return
        try:
            conn = self._connection()
            conn.send_packed_command(packed, check_health=False)
            if len(self._unacked) >= COLLECT_FROM:  # saves a poll per push
                self._collect(wait_for=len(self._unacked) - self._max)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError):
            self._recover()

    def flush(self) -> None:
        """Wait until Redis has acknowledged every entry sent."""
        try:
            self._collect(wait_for=len(self._unacked))
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError):
            self._recover()
            self._collect(wait_for=len(self._unacked))

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.disconnect()

    @property
    def in_flight(self) -> int:
        return len(self._unacked)

    def _connection(self):
        if self._conn is None:
            conn = new_connection(self._url)
            conn.connect()
            self._conn = conn
        return self._conn

    def _collect(self, wait_for: int = 0) -> None:
        """Read the replies that are there; block until ``wait_for`` more are read."""
        conn = self._conn
        if conn is None:  # an earlier recovery failed: retry it now
            if self._unacked:
                self._recover()
            return
        while self._unacked and (wait_for > 0 or conn.can_read(timeout=0)):
            try:
                conn.read_response()
            except redis.exceptions.ResponseError as exc:
                self._unacked.popleft()
                raise ScanDataError(f"Redis refused a push: {exc}") from exc
            self._unacked.popleft()
            wait_for -= 1

    def _recover(self) -> None:
        """New connection; resend what Redis does not have (one attempt, then raise).

        Raises :class:`ProducerConnectionError` if Redis cannot be reached; the entries
        stay queued, and the next push, flush or end tries again.
        """
        self.close()
        try:
            self._resend()
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                OSError) as exc:
            self.close()
            raise ProducerConnectionError(
                f"lost the connection to Redis while pushing to {self._key.decode()} "
                f"({exc}); {len(self._unacked)} entries are kept and will be resent by the "
                f"next push, flush or end once the server is back") from exc

    def _resend(self) -> None:
        last = get_redis(self._url).xrevrange(self._key, "+", "-", count=1)
        if last:
            names = [f for f in last[0][1] if b":" in f]
            landed = names[0] if names else None
            for k, (name, _) in enumerate(self._unacked):
                if name == landed:
                    for _ in range(k + 1):
                        self._unacked.popleft()
                    break
        log.warning("producer lost its Redis connection; resending %d unacknowledged "
                    "entries of %s", len(self._unacked), self._key.decode())
        conn = self._connection()
        pending = list(self._unacked)
        self._unacked.clear()
        for name, packed in pending:
            self._unacked.append((name, packed))
            conn.send_packed_command(packed, check_health=False)
        self._collect(wait_for=len(self._unacked))
