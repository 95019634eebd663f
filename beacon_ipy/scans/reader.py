"""Blocking stream reads on a dedicated connection, cancellable from another greenlet.

A walker blocks in ``XREAD BLOCK`` on a connection of its own (never a pooled one
that others share). Waiting for the reply goes through a gevent watcher on the
socket, so other greenlets keep running, and :class:`StopHandler` can wake the walker
at once: the wait raises inside the walker, which drops the connection (its pending
reply is unusable) and ends the walk cleanly.
"""

from __future__ import annotations

import threading

import redis
from gevent.hub import get_hub

from beacon_ipy.connection import new_connection, resolve_url


class _Wakeup(Exception):
    """Raised inside a waiting reader by :meth:`StopHandler.stop`."""


class StopHandler:
    """End one or more walks from another greenlet (or thread): ``handler.stop()``.

    Pass it as ``stop_handler=`` to ``walk_events`` / ``walk_on_new_events``; after
    ``stop()`` every walk using it returns (its ``for`` loop ends) without an error.
    """

    def __init__(self):
        self._stopped = False
        self._readers: set[BlockingReader] = set()
        self._lock = threading.Lock()

    @property
    def stopped(self) -> bool:
        return self._stopped

    def stop(self) -> None:
        self._stopped = True
        with self._lock:
            readers = list(self._readers)
        for reader in readers:
            reader.wake()

    def _register(self, reader: BlockingReader) -> None:
        with self._lock:
            self._readers.add(reader)

    def _unregister(self, reader: BlockingReader) -> None:
        with self._lock:
            self._readers.discard(reader)


class BlockingReader:
    """XREAD on a private connection; :meth:`xread` returns None when woken or timed out."""

    def __init__(self, url: str | None):
        self._url = resolve_url(url)
        self._conn: redis.connection.Connection | None = None
        self._watcher = None
        self._hub = None
        self._waiting = False
        self._thread: int | None = None

    def _connect(self):
        if self._conn is None:
            conn = new_connection(self._url)
            conn.connect()
            self._conn = conn
            self._hub = get_hub()
            self._thread = threading.get_ident()
            self._watcher = self._hub.loop.io(conn._sock.fileno(), 1)
        return self._conn

    def xread(self, streams: dict[bytes, bytes], count: int, block_ms: int | None):
        """XREAD reply as a list of ``(key, entries)``, or None (timeout/woken).

        ``block_ms=None`` does not block.
        """
        conn = self._connect()
        args: list = ["XREAD", "COUNT", count]
        if block_ms is not None:
            args += ["BLOCK", max(1, int(block_ms))]
        args.append("STREAMS")
        args.extend(streams.keys())
        args.extend(streams.values())
        try:
            conn.send_command(*args)
            if block_ms is not None:
                self._waiting = True
                try:
                    self._hub.wait(self._watcher)
                finally:
                    self._waiting = False
            reply = conn.read_response()
        except _Wakeup:
            self.close()
            return None
        except BaseException:
            self.close()
            raise
        if reply is None:
            return None
        # RESP3 (redis-py's default) gives a map, RESP2 a list of [key, entries].
        return list(reply.items()) if isinstance(reply, dict) else reply

    def wake(self) -> None:
        """Make a pending :meth:`xread` return None at once (any greenlet or thread)."""
        hub, watcher = self._hub, self._watcher
        if hub is None or watcher is None:
            return

        def cancel():
            if self._waiting:
                hub.cancel_wait(watcher, _Wakeup())

        if threading.get_ident() == self._thread:
            cancel()
        else:
            hub.loop.run_callback_threadsafe(cancel)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.close()
        if conn is not None:
            conn.disconnect()


def deadline_ms(deadline: float | None, now: float, cap_s: float) -> int:
    """Milliseconds to block, bounded by ``cap_s`` and an optional absolute deadline."""
    left = cap_s if deadline is None else min(cap_s, deadline - now)
    return max(1, int(left * 1000))

