"""Connection layer: which Redis to use, the embedded per-user server, gevent-friendly clients.

Two roles, one precedence table (:mod:`.address`): ``resolve_url(role="settings")`` is the
Redis of channels (BLISS's settings Redis), ``resolve_url(role="data")`` the Redis of scan
data (BLISS's data Redis, blissdata 2.x; give blissdata ``blissdata_url(url)``).
``explain(role=...)`` says which rule chose it. Nothing here knows about channels, scans or
Jupyter; every other layer stands on it.
"""

from beacon_ipy.connection.address import (
    DATA_ENV_VAR,
    ENV_VAR,
    ROLES,
    Choice,
    RedisUnavailableError,
    Role,
    configured_url,
    explain,
    origin_of,
    redacted,
    resolve_url,
    set_default_url,
)
from beacon_ipy.connection.beacon import BeaconError, forget_beacon_answers
from beacon_ipy.connection.client import (
    check_reachable,
    close_clients,
    get_redis,
    new_client,
    new_connection,
    unreachable_error,
)
from beacon_ipy.connection.datastore import blissdata_url

__all__ = [
    "DATA_ENV_VAR",
    "ENV_VAR",
    "ROLES",
    "BeaconError",
    "Choice",
    "RedisUnavailableError",
    "Role",
    "blissdata_url",
    "check_reachable",
    "close_clients",
    "configured_url",
    "explain",
    "forget_beacon_answers",
    "get_redis",
    "new_client",
    "new_connection",
    "origin_of",
    "redacted",
    "resolve_url",
    "set_default_url",
    "unreachable_error",
]
