"""A cached virtualenv with real BLISS 2.4.0, for interoperability tests and benches.

beacon_ipy must speak BLISS 2.4's channel protocol, and the only convincing proof is real
BLISS code on the other end of the same Redis. BLISS cannot live in beacon_ipy's own
environment (it pins numpy<2, gevent<25, redis 5.0.0 and monkey-patches on import), so it
gets its own virtualenv, built with the install recipe of NOTES §1 (``--no-deps`` BLISS
plus the exact pins, binary wheels only).

Building takes tens of seconds, so the env is built once and cached per user in
``<user cache>/beacon-ipy/bliss-2.4.0-py3.11-<recipe hash>/`` (``platformdirs``); changing
the recipe changes the hash, hence a rebuild. Creation is guarded by a file lock (pytest-xdist
workers and parallel sessions wait for one builder) and is atomic: the env is built in a
``*.tmp-<pid>`` sibling, checked by importing ``bliss.config.channels``, marked ready (marker
file written last) and renamed into place, so a half-built env is never used; leftovers of a
crashed build are removed by the next builder.

Use from tests::

    from bliss_env import bliss_python_fixture  # noqa: F401  (provides the ``bliss_python`` fixture)

    def test_x(bliss_python):                 # path of the BLISS interpreter
        ...

(importing the fixture into ``tests/conftest.py`` instead makes it one session-wide fixture
for every module; imported per module, each module resolves it once, ~0.02 s when cached).

Use from bench scripts: ``from _bliss_env import bliss_python`` (``bench/_bliss_env.py`` puts
``tests/`` on ``sys.path``), or from a shell: ``python tests/bliss_env.py`` prints the
interpreter's path (building it if needed), e.g. ``--bliss "$(python tests/bliss_env.py)"``.

Environment variables:

- ``BEACON_IPY_BLISS_PYTHON``: use this existing interpreter instead (nothing is built);
- ``BEACON_IPY_CACHE_DIR``: cache root instead of the per-user cache directory;
- ``BEACON_IPY_REQUIRE_BLISS=1``: an unreachable package index fails the tests instead of
  skipping them (for CI machines that must run them).

Only ``bin/python`` of the env is meant to be run: console scripts inside it carry the
temporary build path in their shebang.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

try:  # pytest is only needed for the fixture; bench scripts import this module without it
    import pytest
except ImportError:  # pragma: no cover
    pytest = None

BLISS_VERSION = "2.4.0"
#: NOTES §1: real BLISS imports with these, all installed with ``--no-deps``.
REQUIREMENTS: tuple[str, ...] = (
    f"bliss=={BLISS_VERSION}",
    "gevent==24.11.1", "greenlet==3.3.2", "zope.event==6.2", "zope.interface==8.7",
    "redis==5.0.0", "tabulate==0.10.0", "typing_extensions==4.16.0", "numpy==1.26.4",
    "beartype==0.22.9", "Louie==2.0.1", "packaging==26.3", "prompt_toolkit==3.0.53",
    "wcwidth==0.9.4", "networkx==3.6.1",
)
#: Installed if possible; the env is fine without them.
OPTIONAL_REQUIREMENTS: tuple[str, ...] = ("hiredis==3.4.2",)
IMPORT_CHECK = "from bliss.config.channels import Channel, EventChannel"
#: BLISS 2.4 needs >= 3.11; numpy 1.26.4 has wheels up to 3.12.
SUPPORTED_PYTHONS: tuple[tuple[int, int], ...] = ((3, 11), (3, 12))
#: Bumped when the build procedure changes in a way that matters.
BUILD_FORMAT = 1

ENV_PYTHON = "BEACON_IPY_BLISS_PYTHON"
ENV_CACHE_DIR = "BEACON_IPY_CACHE_DIR"
ENV_REQUIRE = "BEACON_IPY_REQUIRE_BLISS"

MARKER = "BEACON_IPY_READY.json"
LOCK_TIMEOUT = 1800.0   # s: how long to wait for another process's build
STEP_TIMEOUT = 900.0    # s: any one build step (venv, pip install)
PROBE_TIMEOUT = 15.0    # s: package index reachability probe

TESTS_DIR = Path(__file__).resolve().parent
PEERS_DIR = TESTS_DIR / "peers"
#: The peer script speaking tests/peer.py's JSON protocol with real BLISS channels.
BLISS_PEER = PEERS_DIR / "bliss_peer.py"

Log = Callable[[str], None]


class BlissEnvError(RuntimeError):
    """The BLISS env could not be built or used (a real failure: tests must fail)."""


class BlissUnavailable(BlissEnvError):
    """BLISS cannot be installed on this machine for an external reason (tests skip)."""


class IndexUnreachable(BlissUnavailable):
    """The package index cannot be reached, so the env cannot be built."""


class NoSuitablePython(BlissUnavailable):
    """No Python 3.11/3.12 interpreter is available to build the env with."""


def _stderr_log(message: str) -> None:
    print(f"[bliss_env] {message}", file=sys.stderr, flush=True)


def recipe_key(python_version: tuple[int, int]) -> str:
    """Hash of everything that determines the env's content; part of its directory name."""
    recipe = {"requirements": REQUIREMENTS, "optional": OPTIONAL_REQUIREMENTS,
              "python": list(python_version), "check": IMPORT_CHECK, "format": BUILD_FORMAT,
              "platform": sys.platform}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


def cache_root() -> Path:
    """Where cached envs live: ``$BEACON_IPY_CACHE_DIR`` or the per-user cache directory."""
    configured = os.environ.get(ENV_CACHE_DIR)
    if configured:
        return Path(configured)
    import platformdirs

    return Path(platformdirs.user_cache_dir("beacon-ipy"))


def env_dir(python_version: tuple[int, int]) -> Path:
    """Directory of the cached env for ``python_version`` and the current recipe."""
    major, minor = python_version
    return cache_root() / f"bliss-{BLISS_VERSION}-py{major}.{minor}-{recipe_key(python_version)}"


def env_python(env: Path) -> Path:
    """The interpreter inside a virtualenv directory."""
    if sys.platform == "win32":  # pragma: no cover
        return env / "Scripts" / "python.exe"
    return env / "bin" / "python"


def _clean_env() -> dict[str, str]:
    """os.environ without what would make a subprocess use another env's packages."""
    env = dict(os.environ)
    for name in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PIP_USER",
                 "PIP_REQUIRE_VIRTUALENV", "PIP_TARGET", "PIP_PREFIX", "PIP_NO_INDEX"):
        env.pop(name, None)
    env["PYTHONNOUSERSITE"] = "1"
    return env


def find_base_python() -> tuple[str, tuple[int, int]]:
    """An interpreter able to build the env: the running one if supported, else one on PATH."""
    running = sys.version_info[:2]
    if running in SUPPORTED_PYTHONS:
        return sys.executable, running
    for version in reversed(SUPPORTED_PYTHONS):
        found = shutil.which(f"python{version[0]}.{version[1]}")
        if found:
            return found, version
    wanted = " or ".join(f"{a}.{b}" for a, b in SUPPORTED_PYTHONS)
    raise NoSuitablePython(
        f"real BLISS {BLISS_VERSION} needs Python {wanted} (numpy 1.26 wheels); this is "
        f"Python {running[0]}.{running[1]} and no python{wanted.split(' or ')[0]} is on PATH. "
        f"Install one, or set {ENV_PYTHON} to a Python that has BLISS {BLISS_VERSION}.")


def _die_with_parent() -> None:  # pragma: no cover  (runs in the child)
    """Linux: a build step is killed with its builder, instead of writing on into a
    directory that the next builder is cleaning up."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _run(args: list[str], what: str, timeout: float = STEP_TIMEOUT) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                              env=_clean_env(), stdin=subprocess.DEVNULL,
                              preexec_fn=_die_with_parent if sys.platform == "linux" else None)
    except subprocess.TimeoutExpired as exc:
        raise BlissEnvError(f"{what} took more than {timeout:.0f} s: {' '.join(args)}") from exc


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


# --- package index reachability -------------------------------------------------------------

def _pip_config(python: str) -> dict[str, str]:
    """``pip config list`` of ``python`` as {"global.index-url": "...", ...} ({} without pip)."""
    out = _run([python, "-m", "pip", "config", "list"], "pip config list", timeout=60).stdout
    config = {}
    for line in out.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            config[key.strip()] = value.strip().strip("'\"")
    return config


def _pip_setting(config: dict[str, str], name: str) -> str | None:
    env = os.environ.get(f"PIP_{name.upper().replace('-', '_')}")
    if env:
        return env
    for key, value in config.items():
        if key.rpartition(".")[2] == name and value:
            return value
    return None


def _http_status(url: str, context) -> int | str:
    """HTTP status of GET ``url``, or a description of the connection-level failure."""
    request = urllib.request.Request(url, headers={"User-Agent": "beacon-ipy-tests"})
    try:
        with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT, context=context) as resp:
            resp.read(1)
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"{type(reason).__name__}: {reason}"


def probe_index(python: str) -> str | None:
    """None if the package index pip would use really answers, else why it cannot be reached.

    Reachable means the index serves its ``bliss`` page, or at least its ``pip`` page (then
    a missing BLISS is a real failure, reported by pip). Connection failures (DNS, refused,
    timeout, TLS) and HTTP errors on both pages count as unreachable: some networks answer
    "404" or "502" for any host they cannot reach.
    """
    config = _pip_config(python)
    index = (_pip_setting(config, "index-url") or "https://pypi.org/simple").split()[0]
    index = index.rstrip("/")
    if index.startswith("file:"):
        path = Path(urllib.request.url2pathname(index[len("file:"):]))
        return None if path.is_dir() else f"{index}: no such directory"
    import ssl

    cert = _pip_setting(config, "cert")
    context = ssl.create_default_context(cafile=cert if cert and os.path.isfile(cert) else None)
    answers = {}
    for project in ("bliss", "pip"):
        status = answers[project] = _http_status(f"{index}/{project}/", context)
        if status == 200:
            return None
        if isinstance(status, str):
            break
    return f"{index}: " + "; ".join(f"/{p}/ -> {a}" for p, a in answers.items())


# --- generic atomic, locked, cached build ----------------------------------------------------

def ensure_built(final: Path, build: Callable[[Path], dict], usable: Callable[[Path], bool],
                 log: Log = _stderr_log, lock_timeout: float = LOCK_TIMEOUT) -> Path:
    """Return ``final``, building it with ``build(tmp_dir)`` first if it is not usable.

    ``build`` fills an empty temporary directory next to ``final`` and returns metadata;
    it is written as the marker file (last), then the directory is renamed to ``final``.
    A file lock makes concurrent callers wait for a single builder; a directory without
    the marker, or for which ``usable`` says no, is rebuilt.
    """
    if (final / MARKER).is_file() and usable(final):
        return final
    from filelock import FileLock, Timeout

    final.parent.mkdir(parents=True, exist_ok=True)
    lock_path = final.parent / (final.name + ".lock")
    try:
        with FileLock(str(lock_path), timeout=lock_timeout):
            if (final / MARKER).is_file() and usable(final):
                log(f"{final} was built by another process meanwhile")
                return final
            # We hold the lock: any temp dir or broken final dir is a dead builder's leftover.
            for stale in final.parent.glob(final.name + ".tmp-*"):
                log(f"removing leftover of an interrupted build: {stale}")
                shutil.rmtree(stale, ignore_errors=True)
            if final.exists():
                log(f"removing unusable env {final}")
                trash = final.parent / f"{final.name}.tmp-old-{os.getpid()}"
                os.rename(final, trash)
                shutil.rmtree(trash, ignore_errors=True)
            tmp = final.parent / f"{final.name}.tmp-{os.getpid()}"
            try:
                meta = build(tmp)
                marker_tmp = tmp / (MARKER + ".part")
                marker_tmp.write_text(json.dumps(meta, indent=2, sort_keys=True))
                os.replace(marker_tmp, tmp / MARKER)
                os.rename(tmp, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
    except Timeout as exc:
        raise BlissEnvError(
            f"waited {lock_timeout:.0f} s for another process building {final} (lock "
            f"{lock_path}); if no build is running, something is wrong with that file "
            f"system's locks") from exc
    if not usable(final):
        raise BlissEnvError(f"{final} was just built but is not usable")
    return final


# --- the BLISS env ---------------------------------------------------------------------------

def _python_runs(env: Path) -> bool:
    python = env_python(env)
    if not python.exists():  # e.g. the base interpreter it links to was removed
        return False
    try:
        return subprocess.run([str(python), "-c", "import sys"], env=_clean_env(),
                              capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _build_bliss(tmp: Path, base_python: str, log: Log) -> dict:
    t0 = time.monotonic()
    log(f"building a real BLISS {BLISS_VERSION} virtualenv in {tmp} (once; cached afterwards)")
    unreachable = probe_index(base_python)  # fail fast, before spending time on the venv
    if unreachable:
        raise IndexUnreachable(unreachable)
    done = _run([base_python, "-m", "venv", str(tmp)], "python -m venv")
    if done.returncode:
        raise BlissEnvError(f"`{base_python} -m venv {tmp}` failed:\n{_tail(done.stderr)}")
    python = str(env_python(tmp))
    pip = [python, "-m", "pip", "install", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "--no-input"]
    optional = list(OPTIONAL_REQUIREMENTS)
    done = _run([*pip, *REQUIREMENTS, *optional], "pip install of BLISS")
    if done.returncode and optional:
        log(f"pip install with the optional {optional} failed; retrying without them")
        optional = []
        done = _run([*pip, *REQUIREMENTS], "pip install of BLISS")
    if done.returncode:
        unreachable = probe_index(python)
        if unreachable:
            raise IndexUnreachable(f"{unreachable} (pip install failed:\n{_tail(done.stderr, 8)})")
        raise BlissEnvError(f"pip install of the BLISS recipe failed (index reachable):\n"
                            f"{' '.join(done.args)}\n{_tail(done.stdout + done.stderr)}")
    done = _run([python, "-c", IMPORT_CHECK], "BLISS import check", timeout=120)
    if done.returncode:
        raise BlissEnvError(f"BLISS installed but `{IMPORT_CHECK}` fails:\n{_tail(done.stderr)}")
    seconds = time.monotonic() - t0
    return {"bliss": BLISS_VERSION, "requirements": list(REQUIREMENTS), "optional": optional,
            "base_python": base_python, "build_seconds": round(seconds, 1),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def bliss_python(log: Log = _stderr_log) -> str:
    """Path of a Python interpreter with real BLISS 2.4.0, building the cached env if needed.

    Raises :class:`IndexUnreachable` or :class:`NoSuitablePython` (both
    :class:`BlissUnavailable`) when BLISS cannot be installed here for an external reason,
    and :class:`BlissEnvError` for anything else.
    """
    configured = os.environ.get(ENV_PYTHON)
    if configured:
        if not (os.path.isfile(configured) and os.access(configured, os.X_OK)):
            raise BlissEnvError(f"{ENV_PYTHON}={configured!r} is not an executable file; "
                                f"unset it to let the tests build their own BLISS env")
        return configured
    base_python, version = find_base_python()
    final = env_dir(version)
    t0 = time.monotonic()
    cached = (final / MARKER).is_file()
    ensure_built(final, lambda tmp: _build_bliss(tmp, base_python, log), _python_runs, log)
    seconds = time.monotonic() - t0
    if cached:
        log(f"reusing cached BLISS env {final} ({seconds:.2f} s)")
    else:
        log(f"BLISS env ready in {seconds:.1f} s: {final}")
    return str(env_python(final))


if pytest is not None:

    @pytest.fixture(scope="session", name="bliss_python")
    def bliss_python_fixture(request: pytest.FixtureRequest) -> str:
        """Session fixture: path of the real-BLISS interpreter (skips loudly if unavailable)."""
        plugins = request.config.pluginmanager
        reporter = plugins.getplugin("terminalreporter")
        capture = plugins.getplugin("capturemanager")

        def log(message: str, **markup: bool) -> None:
            """Show progress on the terminal even while pytest captures output."""
            if reporter is None or capture is None:
                _stderr_log(message)
                return
            with capture.global_and_fixture_disabled():
                reporter.ensure_newline()
                reporter.write_line(f"[bliss_env] {message}", **markup)

        try:
            return bliss_python(log=log)
        except BlissUnavailable as exc:
            reason = (f"REAL-BLISS INTEROPERABILITY NOT TESTED: {type(exc).__name__}: {exc}. "
                      f"Fix the network/index (or set {ENV_PYTHON}); set {ENV_REQUIRE}=1 to "
                      f"make this a failure.")
            if os.environ.get(ENV_REQUIRE, "") not in ("", "0"):
                pytest.fail(reason, pytrace=False)
            log("!" * 30 + " " + reason + " " + "!" * 30, red=True, bold=True)
            pytest.skip(reason)


def main(argv: list[str] | None = None) -> int:
    """CLI: print the BLISS interpreter's path (building the env if needed)."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.parse_args(argv)
    try:
        print(bliss_python())
    except BlissUnavailable as exc:
        _stderr_log(f"BLISS unavailable: {exc}")
        return 2
    except BlissEnvError as exc:
        _stderr_log(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
