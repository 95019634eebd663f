"""Redis clients whose sockets cooperate with gevent, patched process or not.

Every blocking read in beacon-ipy (a channel listener, a stream walker, a saver) runs
in a greenlet. In a process that is gevent-monkey-patched (as BLISS processes are)
the standard socket is already gevent's. In one that is not, redis-py would create
plain blocking sockets and a waiting listener would freeze the whole thread; so our
connection classes hand redis-py a ``gevent.socket.socket`` built over the connected
file descriptor. What a caller needs in an unpatched process: give the gevent hub a
chance to run (``gevent.sleep``, ``gevent.wait``, or any beacon-ipy call that waits,
such as reading ``Channel.value``); greenlets do not run during ``time.sleep``.
"""

from __future__ import annotations

import threading
from urllib.parse import urlsplit

import gevent.socket
import redis
from redis.connection import Connection, SSLConnection, UnixDomainSocketConnection, parse_url

from beacon_ipy.connection.address import (
    Choice,
    RedisUnavailableError,
    Role,
    origin_of,
    redacted,
    resolve_url,
)


def _cooperative(sock):
    """Return a gevent socket over ``sock``'s descriptor (``sock`` itself if it is one)."""
    if isinstance(sock, gevent.socket.socket):
        return sock
    timeout = sock.gettimeout()
    gsock = gevent.socket.socket(sock.family, sock.type, sock.proto, fileno=sock.detach())
    gsock.settimeout(timeout)
    return gsock


class GeventConnection(Connection):
    """TCP connection over a gevent socket."""

    def _connect(self):
        return _cooperative(super()._connect())


class GeventUnixConnection(UnixDomainSocketConnection):
    """Unix-socket connection over a gevent socket."""

    def _connect(self):
        return _cooperative(super()._connect())


# TLS sockets cannot be re-wrapped after the handshake: with ``rediss://`` in an
# unpatched process, call gevent.monkey.patch_all() first (documented in docs/connection.md).
GeventSSLConnection = SSLConnection


def connection_kwargs(url: str) -> dict:
    """redis-py connection keyword arguments for ``url``, with our connection classes."""
    kwargs = parse_url(url)
    scheme = urlsplit(url).scheme
    kwargs["connection_class"] = {
        "unix": GeventUnixConnection,
        "rediss": GeventSSLConnection,
        "redis": GeventConnection,
    }[scheme]
    return kwargs


_clients: dict[str, redis.Redis] = {}
_clients_lock = threading.Lock()


def get_redis(url: str | None = None, role: Role = "settings") -> redis.Redis:
    """A shared ``redis.Redis`` client for ``url`` (resolved for ``role`` as in :mod:`.address`).

    One client (and connection pool) per URL per process. Replies are bytes.
    """
    resolved = resolve_url(url, role)
    with _clients_lock:
        client = _clients.get(resolved)
        if client is None:
            client = new_client(resolved)
            _clients[resolved] = client
        return client


def new_client(url: str, **extra) -> redis.Redis:
    """A new, unshared client for ``url`` (already resolved)."""
    kwargs = connection_kwargs(url)
    kwargs.update(extra)
    cls = kwargs.pop("connection_class")
    pool = redis.ConnectionPool(connection_class=cls, **kwargs)
    return redis.Redis(connection_pool=pool)


def new_connection(url: str, **extra) -> Connection:
    """A single raw connection to ``url`` (already resolved), not yet connected.

    Used by long-lived readers (a pub/sub listener) that own their socket.
    """
    kwargs = connection_kwargs(url)
    kwargs.update(extra)
    cls = kwargs.pop("connection_class")
    return cls(**kwargs)


def url_of_client(client: redis.Redis) -> str:
    """The URL of the server a redis-py client talks to (BLISS code passes clients).

    Built from the client's connection-pool keyword arguments: unix socket path or
    host/port, credentials and database number. TLS clients give ``rediss://``.
    """
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        url = f"unix://{kwargs['path']}"
    else:
        scheme = "rediss" if issubclass(client.connection_pool.connection_class,
                                        SSLConnection) else "redis"
        url = f"{scheme}://{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"
    if kwargs.get("password"):
        auth = f"{kwargs.get('username') or ''}:{kwargs['password']}@"
        url = url.replace("://", f"://{auth}", 1)
    if kwargs.get("db"):
        url += f"?db={kwargs['db']}"
    return url


def check_reachable(url: str | None = None, role: Role = "settings") -> str:
    """PING ``role``'s server; return its URL or raise :class:`RedisUnavailableError`.

    The error says which server was tried, why it was chosen (argument, ``--redis-url``,
    ``BEACON_REDIS_URL``, the Beacon server, the embedded server) and what to set instead.
    """
    resolved = resolve_url(url, role)
    try:
        get_redis(resolved).ping()
    except redis.exceptions.RedisError as exc:
        raise unreachable_error(resolved, exc, role) from exc
    return resolved


def unreachable_error(url: str, exc: BaseException, role: Role = "settings"
                      ) -> RedisUnavailableError:
    """The one-line error for a server at ``url`` that did not answer (``exc``)."""
    origin = origin_of(url) or Choice(role, url, "argument")
    reason = (str(exc) or type(exc).__name__).strip().rstrip(".")
    return RedisUnavailableError(
        f"cannot reach the {role} Redis at {redacted(url)} ({origin.why()}): {reason}; "
        f"{origin.remedy()}"
    )


def close_clients() -> None:
    """Disconnect every shared client (used at shutdown and by tests)."""
    with _clients_lock:
        for client in _clients.values():
            client.connection_pool.disconnect()
        _clients.clear()
