"""Which Redis server beacon-ipy talks to.

Precedence, highest first:

1. an explicit URL given to an API call (``Channel(..., redis_url=...)``,
   :func:`beacon_ipy.connection.set_default_url`, ``--redis-url`` on the CLI);
2. the ``BEACON_REDIS_URL`` environment variable (``redis://``, ``rediss://`` or
   ``unix://`` with optional ``user:password@``);
3. the per-user embedded server (:mod:`beacon_ipy.connection.embedded`), started on
   first use, so that every process of a user shares channels with zero set-up.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

ENV_VAR = "BEACON_REDIS_URL"
_SCHEMES = ("redis", "rediss", "unix")

_default_url: str | None = None


class RedisUnavailableError(ConnectionError):
    """No Redis server could be reached or started; the message says what was tried."""


def validate_url(url: str) -> str:
    """Return ``url`` unchanged if it is a Redis URL we can use, else raise ValueError."""
    parts = urlsplit(url)
    if parts.scheme not in _SCHEMES:
        raise ValueError(
            f"unsupported Redis URL {url!r}: use redis://host:port, rediss://host:port "
            f"or unix:///path/to/redis.sock"
        )
    if parts.scheme == "unix" and not parts.path:
        raise ValueError(f"Redis URL {url!r} names no socket path (unix:///path/to/redis.sock)")
    if parts.scheme != "unix" and not parts.hostname:
        raise ValueError(f"Redis URL {url!r} names no host")
    return url


def set_default_url(url: str | None) -> None:
    """Make ``url`` this process's default server (``None`` goes back to env/embedded)."""
    global _default_url
    _default_url = validate_url(url) if url is not None else None


def configured_url(url: str | None = None) -> str | None:
    """The URL chosen by argument, process default or environment; ``None`` means embedded."""
    if url:
        return validate_url(url)
    if _default_url:
        return _default_url
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        try:
            return validate_url(env)
        except ValueError as exc:
            raise ValueError(f"{ENV_VAR} is set to an unusable value: {exc}") from None
    return None


# (BEACON_IPY_RUNTIME_DIR at the time, socket path) of the embedded server found last
_embedded_socket: tuple[str | None, str] | None = None


def resolve_url(url: str | None = None) -> str:
    """The URL to connect to, starting the embedded server if nothing is configured.

    The embedded server's address never changes, so once it is known this costs a
    ``stat`` of its socket (every ``Channel(...)`` and ``get_redis()`` comes here), not a
    lock, a PING and a directory check; if the socket is gone, the server is started
    again.
    """
    global _embedded_socket
    chosen = configured_url(url)
    if chosen is not None:
        return chosen
    from beacon_ipy.connection.embedded import RUNTIME_DIR_ENV, ensure_server

    where = os.environ.get(RUNTIME_DIR_ENV)
    if (_embedded_socket is not None and _embedded_socket[0] == where
            and os.path.exists(_embedded_socket[1])):
        return f"unix://{_embedded_socket[1]}"
    info = ensure_server()
    _embedded_socket = (where, str(info.socket_path))
    return info.url


def redacted(url: str) -> str:
    """``url`` with any password hidden, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()
