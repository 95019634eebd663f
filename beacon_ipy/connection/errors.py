"""The connection layer's error: no Redis server could be reached, found or started."""

from __future__ import annotations


class RedisUnavailableError(ConnectionError):
    """No Redis server could be reached or started; the message says what was tried and
    what to set."""
