"""The saver's "saver pending" markers: the scans a saver has not finished, across restarts.

A saver marks every scan it takes on, before it reads the scan's first point, and
releases the marker once the scan's file is complete (renamed, master updated). The
marker is a Redis hash on the data Redis, next to the scan's blissdata keys::

    beacon_ipy:saver_pending:<scan key>   hash  <holder> -> <unix ms deadline>
                                          key TTL = the longest deadline

``<holder>`` names a saver *and its directory* (``saver:<hash of the directory>``, the
same across restarts), so the next saver of a directory finds the scans its killed or
stopped predecessor had not finished. The deadline (default 7 days, blissdata's own
lifetime of closed scans) is a safety net: a saver that is never restarted stops
protecting its scans then.

A saver also records, per session, the newest scan it has taken on::

    beacon_ipy:saver_seen:<holder>:<session>   string  <scan key>   (TTL = the deadline)

so that the next saver of the directory also saves the scans created while no saver ran
(blissdata keys are ULIDs: they sort in creation order).

What protects the data from trimming is the memory rule of
:mod:`beacon_ipy.scans.memory` (docs/scan_data.md): the saver's runners hold what they have
not read (``hold_as``), and a scan waiting for a retry is held whole
(:meth:`PendingMarks.hold_for_retry`). The markers above are the saver's own bookkeeping
of what it must still finish, across restarts.
"""

from __future__ import annotations

from typing import Any

PREFIX = "beacon_ipy:saver_pending:"
SEEN_PREFIX = "beacon_ipy:saver_seen:"
DEFAULT_TTL = 7 * 24 * 3600.0


def pending_key(scan_key: str) -> str:
    """The marker key of a blissdata scan key."""
    return PREFIX + scan_key


class PendingMarks:
    """Marks and releases scans for one holder on one Redis client."""

    def __init__(self, client: Any, holder: str, ttl: float = DEFAULT_TTL):
        self.client = client
        self.holder = holder
        self.ttl_ms = max(1, int(ttl * 1000))

    def _now_ms(self) -> int:
        sec, usec = self.client.time()
        return int(sec) * 1000 + int(usec) // 1000

    def mark(self, scan_key: str) -> None:
        """Protect ``scan_key`` from trimming until :meth:`release` (or the TTL)."""
        key = pending_key(scan_key)
        deadline = self._now_ms() + self.ttl_ms
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(key, self.holder, deadline)
        pipe.pexpire(key, self.ttl_ms, gt=True)
        pipe.pexpire(key, self.ttl_ms, nx=True)
        pipe.execute()

    def release(self, scan_key: str) -> None:
        """This holder is done with ``scan_key`` (the key goes with its last holder)."""
        self.client.hdel(pending_key(scan_key), self.holder)

    def holders(self, scan_key: str) -> set[str]:
        """Holders whose marker on ``scan_key`` has not passed its deadline."""
        now = self._now_ms()
        raw = self.client.hgetall(pending_key(scan_key))
        return {(k.decode() if isinstance(k, bytes) else k) for k, v in raw.items()
                if int(v) > now}

    def is_marked(self, scan_key: str) -> bool:
        """True if this holder marked ``scan_key`` and has not released it."""
        return self.holder in self.holders(scan_key)

    # -- the newest scan taken on, per session -------------------------------------------
    def _seen_key(self, session: str) -> str:
        return f"{SEEN_PREFIX}{self.holder}:{session}"

    def last_seen(self, session: str) -> str | None:
        """The newest scan key this holder took on in ``session`` (None: never ran)."""
        raw = self.client.get(self._seen_key(session))
        return raw.decode() if isinstance(raw, bytes) else raw

    def seen(self, session: str, scan_key: str) -> None:
        """Record ``scan_key`` as taken on (kept if an earlier one is newer)."""
        key = self._seen_key(session)
        current = self.last_seen(session)
        if current is None or scan_key > current:
            self.client.set(key, scan_key, px=self.ttl_ms)
        else:
            self.client.pexpire(key, self.ttl_ms)

    def forget(self, session: str) -> None:
        """Stop recording: the next saver of this directory starts afresh."""
        self.client.delete(self._seen_key(session))

    # -- keeping a failed scan's data for its retry --------------------------------------
    @property
    def retry_holder(self) -> str:
        """The memory-rule holder name under which a scan waiting for a retry is held."""
        return f"{self.holder}:retry"

    def hold_for_retry(self, scan_key: str, stream_keys: list[str], ttl: float) -> None:
        """Keep every point of ``scan_key`` (the memory rule of beacon_ipy.scans.memory:
        first unread index 0 on every stream) until :meth:`release_retry`: an attempt
        that failed starts over from the scan's first point."""
        from beacon_ipy.scans.memory import set_hold

        set_hold(self.client, scan_key, self.retry_holder, dict.fromkeys(stream_keys, 0), ttl)

    def release_retry(self, scan_key: str) -> None:
        from beacon_ipy.scans.memory import release_hold

        release_hold(self.client, scan_key, self.retry_holder)
