"""Which Redis server beacon-ipy talks to, for each of its two roles.

A BLISS installation has two Redis servers: the **settings** one (``Channel``s, settings) and
the **data** one (blissdata scans, with RedisJSON and RediSearch). beacon-ipy's channels use
the settings role, its scans the data role. Precedence, highest first:

1. an explicit URL: given to the call (``Channel(..., redis=...)``, ``resolve_url(url)``), or
   set for the process (:func:`set_default_url`, ``beacon-ipy --redis-url``);
2. ``BEACON_REDIS_URL`` (both roles) and ``BEACON_DATA_REDIS_URL`` (data role only; it wins
   over ``BEACON_REDIS_URL`` there): ``redis://``, ``rediss://`` or ``unix://`` URLs;
3. ``BEACON_HOST`` (BLISS's own variable): the Beacon server is asked for both servers
   (:mod:`.beacon`; once per process);
4. the per-user embedded server (:mod:`.embedded`), started on first use, one server for
   both roles (it loads the modules and is initialised as a blissdata data store).

:func:`explain` says which rule chose a role's server and what to set when it fails.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Literal
from urllib.parse import urlsplit

from beacon_ipy.connection.beacon import (
    HOST_ENV,
    PORT_ENV,
    beacon_answer,
    configured_beacon,
    data_server_missing,
)
from beacon_ipy.connection.errors import RedisUnavailableError

ENV_VAR = "BEACON_REDIS_URL"
DATA_ENV_VAR = "BEACON_DATA_REDIS_URL"
Role = Literal["settings", "data"]
ROLES: tuple[Role, ...] = ("settings", "data")
_SCHEMES = ("redis", "rediss", "unix")

__all__ = ["DATA_ENV_VAR", "ENV_VAR", "ROLES", "Choice", "RedisUnavailableError", "Role",
           "configured_url", "explain", "origin_of", "redacted", "resolve_url",
           "set_default_url", "validate_url"]

_defaults: dict[str, str] = {}


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


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise ValueError(f"unknown Redis role {role!r}: use 'settings' or 'data'")


def set_default_url(url: str | None, role: Role | None = None) -> None:
    """Make ``url`` this process's server for ``role`` (both roles if ``None``).

    ``None`` as ``url`` goes back to the environment / Beacon / embedded server.
    """
    roles = ROLES if role is None else (role,)
    for name in roles:
        _check_role(name)
    checked = validate_url(url) if url is not None else None
    for name in roles:
        if checked is None:
            _defaults.pop(name, None)
        else:
            _defaults[name] = checked


@dataclasses.dataclass(frozen=True)
class Choice:
    """The server chosen for one role, and why."""

    role: str
    url: str | None  #: ``None`` only for the embedded server before it is started
    source: str  #: "argument", "process", ENV_VAR, DATA_ENV_VAR, HOST_ENV or "embedded"
    beacon: str | None = None  #: the Beacon server asked, for source == HOST_ENV

    def why(self) -> str:
        """Where the choice comes from, e.g. ``BEACON_HOST=localhost:25000 (asked Beacon)``."""
        return {
            "argument": "the URL given to the call",
            "process": "set for this process (--redis-url or set_default_url())",
            ENV_VAR: f"{ENV_VAR}",
            DATA_ENV_VAR: f"{DATA_ENV_VAR}",
            HOST_ENV: f"named by the Beacon server at {self.beacon} ({HOST_ENV})",
            "embedded": "the per-user embedded server (nothing configured)",
        }[self.source]

    def remedy(self) -> str:
        """What to do when this server cannot be reached."""
        if self.source == "argument":
            return "check the URL given to the call"
        if self.source == "process":
            return "check the --redis-url value (or the URL given to set_default_url())"
        if self.source in (ENV_VAR, DATA_ENV_VAR):
            return (f"check that the server runs and {self.source} is right, or unset "
                    f"{self.source} to fall back to {_fallback_after_env(self.role)}")
        if self.source == HOST_ENV:
            return (f"check that beacon-server at {self.beacon} and its Redis servers run, or "
                    f"set {ENV_VAR} (and {DATA_ENV_VAR}) to use Redis servers directly")
        return "run 'beacon-ipy server stop' and try again; its log is in its runtime dir"


def _fallback_after_env(role: str) -> str:
    if role == "data" and os.environ.get(DATA_ENV_VAR) and os.environ.get(ENV_VAR):
        return ENV_VAR
    try:
        beacon = configured_beacon()
    except ValueError:
        beacon = None
    return f"the Beacon server at {beacon}" if beacon else "the embedded per-user server"


def _env_url(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    try:
        return validate_url(value)
    except ValueError as exc:
        raise ValueError(f"{name} is set to an unusable value: {exc}") from None


def _configured(url: str | None, role: str) -> Choice | None:
    """The choice by rules 1-3, or ``None`` when the embedded server is the answer."""
    _check_role(role)
    if url and url != _defaults.get(role):
        return Choice(role, validate_url(url), "argument")
    if role in _defaults:
        return Choice(role, _defaults[role], "process")
    if role == "data":
        data = _env_url(DATA_ENV_VAR)
        if data:
            return Choice(role, data, DATA_ENV_VAR)
    env = _env_url(ENV_VAR)
    if env:
        return Choice(role, env, ENV_VAR)
    try:
        beacon = configured_beacon()
    except ValueError as exc:
        raise ValueError(f"{exc} ({HOST_ENV}/{PORT_ENV} as for BLISS)") from None
    if beacon is None:
        return None
    answer = beacon_answer(beacon)
    chosen = answer.settings_url if role == "settings" else answer.data_url
    if chosen is None:
        raise data_server_missing(answer)
    return Choice(role, chosen, HOST_ENV, beacon=str(beacon))


# URL -> how it was chosen, for error messages about a URL handed around by callers
_origins: dict[str, Choice] = {}


def _remember(choice: Choice) -> Choice:
    if choice.url is not None:
        _origins.setdefault(choice.url, choice)
        if choice.source != "argument":
            _origins[choice.url] = choice
    return choice


def origin_of(url: str) -> Choice | None:
    """How ``url`` was chosen, if this process chose it (for messages)."""
    return _origins.get(url)


def configured_url(url: str | None = None, role: Role = "settings") -> str | None:
    """The URL chosen by argument, process default, environment or Beacon; ``None`` means
    the embedded server. Asks Beacon (once per process) if ``BEACON_HOST`` decides."""
    choice = _configured(url, role)
    return _remember(choice).url if choice is not None else None


# (BEACON_IPY_RUNTIME_DIR at the time, socket path) of the embedded server found last
_embedded_socket: tuple[str | None, str] | None = None
_embedded_data_ready: set[str] = set()


def _embedded_url() -> str:
    global _embedded_socket
    from beacon_ipy.connection.embedded import RUNTIME_DIR_ENV, ensure_server

    where = os.environ.get(RUNTIME_DIR_ENV)
    if (_embedded_socket is not None and _embedded_socket[0] == where
            and os.path.exists(_embedded_socket[1])):
        return f"unix://{_embedded_socket[1]}"
    info = ensure_server()
    _embedded_socket = (where, str(info.socket_path))
    return info.url


def resolve_url(url: str | None = None, role: Role = "settings") -> str:
    """The URL of ``role``'s server, starting the embedded server if nothing is configured.

    The embedded server's address never changes, so once it is known this costs a ``stat``
    of its socket (every ``Channel(...)`` comes here), not a lock and a PING; if the socket
    is gone, the server is started again. For the data role, the embedded server is checked
    (once per process) to be a blissdata data store, and initialised if it is not.
    """
    choice = _configured(url, role)
    if choice is not None:
        return _remember(choice).url
    resolved = _embedded_url()
    if role == "data" and resolved not in _embedded_data_ready:
        from beacon_ipy.connection.embedded import ensure_data_store

        ensure_data_store()
        _embedded_data_ready.add(resolved)
    _remember(Choice(role, resolved, "embedded"))
    return resolved


def explain(url: str | None = None, role: Role = "settings") -> Choice:
    """Which server ``role`` uses and why, without starting the embedded server.

    Raises what :func:`resolve_url` would (a Beacon that cannot be asked, a malformed
    variable); ``Choice.url`` is the embedded server's socket URL when nothing is configured.
    """
    choice = _configured(url, role)
    if choice is not None:
        return _remember(choice)
    from beacon_ipy.connection.embedded import status

    return Choice(role, status().url, "embedded")


def redacted(url: str) -> str:
    """``url`` with any password hidden, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()
