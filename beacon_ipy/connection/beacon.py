"""Ask a Beacon server for its Redis servers, as every BLISS process does (NOTES §6).

A BLISS process has ``BEACON_HOST=host:port`` and asks that Beacon server (``beacon-server``)
for two Redis servers: the **settings** Redis (channels, settings) and the **data** Redis
(blissdata scans). The protocol (``bliss/beacon/protocol.py``, client side in
``bliss/config/conductor/connection.py``) frames each message as two little-endian int32
(type, length) followed by ``length`` bytes:

- ``REDIS_QUERY`` (30, empty) → ``REDIS_QUERY_ANSWER`` (31, ``host:port``, or
  ``localhost:/path/redis.sock`` when the client is on the Beacon's machine);
- ``REDIS_DATA_SERVER_QUERY`` (32, ``key|``) → ``REDIS_DATA_SERVER_OK`` (34,
  ``key|host|port`` or ``key|localhost|/path.sock``) or ``REDIS_DATA_SERVER_FAILED``
  (33, ``key|reason``); a Beacon that does not know a message answers ``UNKNOW_MESSAGE``
  (-1) echoing its content.

Both queries go out in one write and both answers are read on the same TCP connection, which
is then closed: one round trip per Beacon server per process (:func:`beacon_answer` caches
it). BLISS's address syntax is kept: ``BEACON_HOST=host:port``; ``BEACON_HOST=host`` takes the
port from ``BEACON_PORT``; ``BEACON_PORT`` alone means ``localhost``; a port that is a path is
Beacon's unix socket (``BEACON_HOST=localhost:/tmp/beacon_xyz.sock``).
"""

from __future__ import annotations

import dataclasses
import os
import struct
import time

from beacon_ipy.connection.errors import RedisUnavailableError

HOST_ENV = "BEACON_HOST"
PORT_ENV = "BEACON_PORT"
QUERY_TIMEOUT = 3.0  # s, as BLISS's own client

REDIS_QUERY = 30
REDIS_QUERY_ANSWER = 31
REDIS_DATA_SERVER_QUERY = 32
REDIS_DATA_SERVER_FAILED = 33
REDIS_DATA_SERVER_OK = 34
UNKNOWN_MESSAGE = -1
_HEADER = struct.Struct("<ii")
_DATA_KEY = b"1"


class BeaconError(RedisUnavailableError):
    """The Beacon server could not be asked, or did not name the Redis server wanted."""


@dataclasses.dataclass(frozen=True)
class BeaconAddress:
    """Where a Beacon server listens: TCP ``host:port`` or a unix socket path."""

    host: str
    port: int | None = None
    socket_path: str | None = None

    def __str__(self) -> str:
        return f"{self.host}:{self.socket_path or self.port}"


def parse_beacon_host(value: str | None, port: str | None = None) -> BeaconAddress | None:
    """``BEACON_HOST``/``BEACON_PORT`` values → address; ``None`` when neither is set.

    Raises ValueError (naming the variables) for an address BLISS would refuse too.
    """
    value = (value or "").strip()
    port = (port or "").strip() or None
    if not value and port is None:
        return None
    host, sep, suffix = (value or "localhost").partition(":")
    host = host or "localhost"
    suffix = suffix.strip() if sep else port
    if not suffix:
        raise ValueError(f"{HOST_ENV}={value!r} names no port: use {HOST_ENV}=host:port "
                         f"(or set {PORT_ENV})")
    if suffix.isdigit():
        number = int(suffix)
        if not 0 < number < 65536:
            raise ValueError(f"{HOST_ENV}: port {number} is out of range")
        return BeaconAddress(host, port=number)
    if suffix.startswith("/"):
        return BeaconAddress(host, socket_path=suffix)
    raise ValueError(f"{HOST_ENV}={value!r}: {suffix!r} is neither a port number nor a unix "
                     f"socket path; use {HOST_ENV}=host:port")


def configured_beacon() -> BeaconAddress | None:
    """The Beacon server named by the environment (ValueError if malformed), else None."""
    return parse_beacon_host(os.environ.get(HOST_ENV), os.environ.get(PORT_ENV))


def redis_url_from_address(address: str) -> str:
    """A Redis address as Beacon sends it (``host:port``, ``host:/path.sock``) → a URL."""
    host, sep, suffix = address.strip().partition(":")
    if not sep:
        return f"redis://{host}:6379"
    if suffix.isdigit():
        return f"redis://{host}:{suffix}"
    return f"unix://{suffix}"


@dataclasses.dataclass(frozen=True)
class BeaconAnswer:
    """What one Beacon server said: its settings Redis and its data Redis (or why not)."""

    address: BeaconAddress
    settings_url: str
    data_url: str | None
    data_error: str | None = None


def _frame(kind: int, content: bytes = b"") -> bytes:
    return _HEADER.pack(kind, len(content)) + content


def _connect(address: BeaconAddress, timeout: float):
    import gevent.socket  # cooperative whether or not the process is monkey-patched

    if address.socket_path is not None:
        sock = gevent.socket.socket(gevent.socket.AF_UNIX, gevent.socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(address.socket_path)
        except OSError:
            sock.close()
            raise
        return sock
    return gevent.socket.create_connection((address.host, address.port), timeout=timeout)


def _reason(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g} s"
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return text.rstrip(".")


def ask_beacon(address: BeaconAddress, timeout: float = QUERY_TIMEOUT) -> BeaconAnswer:
    """Ask ``address`` for both Redis servers (one connection, one round trip; no cache)."""
    where = f"the Beacon server at {address}"
    remedy = (f"start beacon-server there or correct {HOST_ENV}, or set BEACON_REDIS_URL "
              f"(and BEACON_DATA_REDIS_URL) to use Redis servers directly")
    try:
        sock = _connect(address, timeout)
    except OSError as exc:
        raise BeaconError(f"cannot reach {where} ({HOST_ENV}): {_reason(exc, timeout)}; "
                          f"{remedy}") from exc
    settings: str | None = None
    data: str | None = None
    data_error: str | None = None
    deadline = time.monotonic() + timeout
    try:
        sock.sendall(_frame(REDIS_QUERY) + _frame(REDIS_DATA_SERVER_QUERY, _DATA_KEY + b"|"))
        buffer = b""
        while settings is None or (data is None and data_error is None):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError()
            sock.settimeout(left)
            chunk = sock.recv(16384)
            if not chunk:
                raise ConnectionError("it closed the connection before answering")
            buffer += chunk
            while len(buffer) >= _HEADER.size:
                kind, length = _HEADER.unpack_from(buffer)
                if len(buffer) < _HEADER.size + length:
                    break
                content = buffer[_HEADER.size:_HEADER.size + length]
                buffer = buffer[_HEADER.size + length:]
                if kind == REDIS_QUERY_ANSWER:
                    settings = content.decode()
                elif kind == REDIS_DATA_SERVER_OK:
                    data = content.partition(b"|")[2].replace(b"|", b":").decode()
                elif kind == REDIS_DATA_SERVER_FAILED:
                    data_error = content.partition(b"|")[2].decode(errors="replace") or "failed"
                elif kind == UNKNOWN_MESSAGE and content.startswith(_DATA_KEY + b"|"):
                    data_error = "it does not know the data-server query (an older Beacon)"
                elif kind == UNKNOWN_MESSAGE:
                    raise ConnectionError("it does not know the Redis query (is it a Beacon "
                                          "server?)")
    except (OSError, ValueError) as exc:
        if settings is None:
            raise BeaconError(f"{where} ({HOST_ENV}) did not say where its Redis server is: "
                              f"{_reason(exc, timeout)}; {remedy}") from exc
        data_error = _reason(exc, timeout)
    finally:
        sock.close()
    try:
        settings_url = redis_url_from_address(settings)
        data_url = redis_url_from_address(data) if data else None
    except ValueError as exc:
        raise BeaconError(f"{where} ({HOST_ENV}) answered an address beacon-ipy cannot use: "
                          f"{exc}") from exc
    return BeaconAnswer(address, settings_url, data_url, data_error)


_answers: dict[BeaconAddress, BeaconAnswer] = {}


def beacon_answer(address: BeaconAddress) -> BeaconAnswer:
    """:func:`ask_beacon`, once per Beacon server per process (every channel comes here).

    No lock: it would be a thread lock held across gevent I/O; two greenlets racing on the
    first query both ask, and both answers are the same.
    """
    answer = _answers.get(address)
    if answer is None:
        answer = _answers[address] = ask_beacon(address)
    return answer


def forget_beacon_answers() -> None:
    """Ask again next time (after a Beacon restart; tests)."""
    _answers.clear()


def data_server_missing(answer: BeaconAnswer) -> BeaconError:
    """The error for a Beacon server that named no data Redis."""
    return BeaconError(
        f"the Beacon server at {answer.address} ({HOST_ENV}) names no data Redis server "
        f"({answer.data_error}); scans need one: set BEACON_DATA_REDIS_URL=redis://host:port "
        f"(the Redis with RedisJSON/RediSearch that holds the scan data)")
