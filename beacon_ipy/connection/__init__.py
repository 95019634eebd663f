"""Connection layer: which Redis to use, the embedded per-user server, gevent-friendly clients.

Nothing here knows about channels, scans or Jupyter; every other layer stands on it.
"""

from beacon_ipy.connection.address import (
    ENV_VAR,
    RedisUnavailableError,
    configured_url,
    redacted,
    resolve_url,
    set_default_url,
)
from beacon_ipy.connection.client import (
    check_reachable,
    close_clients,
    get_redis,
    new_client,
    new_connection,
)

__all__ = [
    "ENV_VAR",
    "RedisUnavailableError",
    "check_reachable",
    "close_clients",
    "configured_url",
    "get_redis",
    "new_client",
    "new_connection",
    "redacted",
    "resolve_url",
    "set_default_url",
]
