"""A Redis as blissdata 2.x wants it: RedisJSON + RediSearch loaded, initialised once.

blissdata's ``DataStore(url)`` refuses a database without the ``_PROTOCOL_VERSION_`` key;
``DataStore(url, init_db=True)`` writes it (with the RediSearch index and the stream-sealing
Lua library) into an *empty* database whose server has the two modules. A ``beacon-server``
does that for the data Redis it starts; beacon-ipy does it for its embedded server (and the
test fixtures for their private servers), with blissdata's own code.

Two blissdata pitfalls (NOTES §5) are handled here, where blissdata is first imported:
- with redis-py 8 (RESP3 by default) ``search_existing_scans`` fails: blissdata's
  connections get ``protocol=2`` in their URL (:func:`blissdata_url`);
- blissdata picks its stream sender (gevent or threads) when first imported: import it only
  once the process has made its gevent choice. beacon-ipy imports it lazily, when the data
  role is first resolved to the embedded server or when that server is started.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import redis

PROTOCOL_KEY = "_PROTOCOL_VERSION_"
REQUIRED_MODULES = ("ReJSON", "search")


def blissdata_url(url: str) -> str:
    """``url`` with ``protocol=2`` (RESP2) unless it names a protocol already."""
    if "protocol" in dict(parse_qsl(urlsplit(url).query)):
        return url
    # (not urlunsplit: it turns "unix:///path" into "unix:/path")
    return f"{url}{'&' if '?' in url else '?'}protocol=2"


def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(blissdata_url(url), socket_timeout=5)


def server_modules(url: str) -> set[str]:
    """Names of the modules loaded by the server at ``url`` (e.g. ``{"ReJSON", "search"}``)."""
    client = _client(url)
    try:
        return {module[b"name"].decode() for module in client.module_list()}
    finally:
        client.close()


def data_store_version(url: str) -> str | None:
    """The blissdata protocol version stored at ``url``, ``None`` if not initialised."""
    client = _client(url)
    try:
        value = client.get(PROTOCOL_KEY)
    finally:
        client.close()
    return value.decode() if value is not None else None


def init_data_store(url: str) -> None:
    """Initialise the empty database at ``url`` for blissdata (``DataStore(init_db=True)``).

    Raises RuntimeError (blissdata's, with its message) when the modules are missing or the
    database is not empty.
    """
    import warnings

    from blissdata.redis_engine.store import DataStore

    with warnings.catch_warnings():
        # blissdata falls back to FT.CONFIG SET on servers without the Redis 8 config
        # name; redis-py flags that call as deprecated.
        warnings.simplefilter("ignore", DeprecationWarning)
        store = DataStore(blissdata_url(url), init_db=True)
    del store  # its finalizer disconnects its connection pool
