"""Run a throw-away ``redis-server`` on a unix socket: used by tests, benches and demos.

The embedded per-user server (:mod:`.embedded`) uses the same command line; this class
adds what a test needs: a server owned by the caller that can be stopped and restarted
on the same address (to test reconnection).
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
import time
from pathlib import Path

from beacon_ipy.connection.errors import RedisUnavailableError
from beacon_ipy.connection.server_binary import (
    ServerProgram,
    find_server_program,
    no_program_message,
)


def server_args(program: ServerProgram, socket_path: Path, workdir: Path, *,
                pidfile: Path | None = None, logfile: Path | None = None,
                port: int = 0, maxmemory: int = 0) -> list[str]:
    """The server command line: unix socket only (unless ``port``), no persistence.

    ``maxmemory`` (bytes, 0 = unbounded) comes with policy ``noeviction``, as in BLISS's
    ``redis_data.conf``: a full server refuses writes, it never evicts keys; blissdata's
    memory tracker trims scan data before that happens.
    """
    args = [
        program.binary,
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--unixsocket", str(socket_path),
        "--unixsocketperm", "700",
        "--save", "",
        "--appendonly", "no",
        "--daemonize", "no",
        "--dir", str(workdir),
        "--databases", "1",
        *program.module_args(),
    ]  # fmt: skip
    if maxmemory:
        args += ["--maxmemory", str(int(maxmemory)), "--maxmemory-policy", "noeviction"]
    if pidfile is not None:
        args += ["--pidfile", str(pidfile)]
    if logfile is not None:
        args += ["--logfile", str(logfile)]
    return args


def ping(socket_path: Path, timeout: float = 0.5) -> bool:
    """True if a Redis server answers PING on ``socket_path`` (raw socket, no pools)."""
    import socket

    if not Path(socket_path).exists():
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(socket_path))
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def wait_until_up(socket_path: Path, proc: subprocess.Popen | None, timeout: float) -> None:
    """Poll (with a deadline) until the server answers, or raise with its log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ping(socket_path):
            return
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.005)  # polling a subprocess's start-up, bounded by the deadline
    raise RedisUnavailableError(f"redis-server did not come up on {socket_path} in {timeout} s")


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Linux: the server is killed when its owner dies (a test killed by a timeout, a
    crashed bench), instead of living on as an orphan. The signal follows the *thread*
    that started the server: start servers from the main (or another long-lived) thread."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class PrivateRedis:
    """A redis-server subprocess on a private unix socket, owned by the caller.

    With ``data_store=True`` every (re)start also initialises it as a blissdata data store
    (as the embedded server and a ``beacon-server``'s data Redis are); that needs a program
    with the RedisJSON/RediSearch modules.
    """

    def __init__(self, workdir: str | Path | None = None, program: ServerProgram | None = None,
                 *, data_store: bool = False):
        self.program = program or find_server_program()
        if self.program is None:
            raise RedisUnavailableError(no_program_message())
        if data_store and not self.program.carries_scan_data:
            raise RedisUnavailableError(
                f"a blissdata data store needs RedisJSON and RediSearch, which "
                f"{self.program.origin} does not load: {no_program_message()}")
        self.data_store = data_store
        self._tmp = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="bipy-redis-")
            workdir = self._tmp.name
        self.workdir = Path(workdir)
        self.socket_path = self.workdir / "redis.sock"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def start(self, timeout: float = 10.0) -> PrivateRedis:
        args = server_args(self.program, self.socket_path, self.workdir,
                           logfile=self.workdir / "redis.log")
        import sys

        self.proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        wait_until_up(self.socket_path, self.proc, timeout)
        if self.data_store:
            from beacon_ipy.connection.datastore import init_data_store

            init_data_store(self.url)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()

    def kill(self) -> None:
        """Kill the server abruptly (SIGKILL), as a crash would."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def restart(self, timeout: float = 10.0) -> None:
        self.stop()
        self.start(timeout)

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> PrivateRedis:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
