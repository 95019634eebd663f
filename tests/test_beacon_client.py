"""The Beacon client and the two-role precedence table, with real sockets and processes.

The happy path against a real ``beacon-server`` is in ``test_beacon.py``; the failures a real
one cannot be made to show (no data server, a Redis that is gone, a Beacon that is not there)
use ``peers/stand_in_beacon.py``, a separate process speaking BLISS's framing on real TCP.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from beacon_ipy.connection import (
    DATA_ENV_VAR,
    ENV_VAR,
    BeaconError,
    RedisUnavailableError,
    explain,
    forget_beacon_answers,
    resolve_url,
    set_default_url,
)
from beacon_ipy.connection.beacon import ask_beacon, parse_beacon_host

PEERS = Path(__file__).parent / "peers"


@pytest.fixture
def beacon_env(monkeypatch):
    """Nothing configured but what the test sets; Beacon answers are asked afresh."""
    for var in (ENV_VAR, DATA_ENV_VAR, "BEACON_HOST", "BEACON_PORT"):
        monkeypatch.delenv(var, raising=False)
    forget_beacon_answers()
    yield monkeypatch
    forget_beacon_answers()
    set_default_url(None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def stand_in_beacon():
    """Start ``stand_in_beacon.py`` with the given answers; returns its BEACON_HOST."""
    procs = []

    def start(settings: str, mode: str, data: str = "") -> str:
        proc = subprocess.Popen([sys.executable, str(PEERS / "stand_in_beacon.py"), settings,
                                 mode, data], stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        return f"localhost:{int(proc.stdout.readline())}"

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def one_line_error(message: str) -> None:
    assert "\n" not in message and ".." not in message, message


def test_beacon_host_syntax_is_blisss():
    assert parse_beacon_host("id00:25000") == parse_beacon_host("id00", "25000")
    assert parse_beacon_host("id00:25000").port == 25000
    assert parse_beacon_host(None, "25001").host == "localhost"  # BEACON_PORT alone
    assert parse_beacon_host("localhost:/tmp/beacon_x.sock").socket_path == "/tmp/beacon_x.sock"
    assert parse_beacon_host(None) is None and parse_beacon_host("  ") is None
    for bad in ("id00", "id00:http", "id00:99999"):
        with pytest.raises(ValueError, match="BEACON_HOST"):
            parse_beacon_host(bad)


def test_unreachable_beacon_says_what_was_tried_and_what_to_set(beacon_env):
    port = free_port()  # nobody listens there
    beacon_env.setenv("BEACON_HOST", f"localhost:{port}")
    with pytest.raises(BeaconError) as err:
        resolve_url()
    message = str(err.value)
    one_line_error(message)
    assert f"the Beacon server at localhost:{port} (BEACON_HOST)" in message
    assert "Connection refused" in message and ENV_VAR in message
    # The CLI: one line per role, exit status 2, no traceback.
    done = subprocess.run([sys.executable, "-m", "beacon_ipy.cli", "where"], text=True,
                          capture_output=True, timeout=60, env=dict(os.environ))
    assert done.returncode == 2 and not done.stderr
    lines = done.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines] == ["settings", "data"]
    assert all("error: cannot reach the Beacon server" in line for line in lines)


@pytest.mark.parametrize("mode", ["unknown", "failed"])
def test_beacon_without_data_server(beacon_env, stand_in_beacon, redis_server, own_redis, mode):
    host = stand_in_beacon(f"localhost:{redis_server.socket_path}", mode)
    beacon_env.setenv("BEACON_HOST", host)
    assert resolve_url() == redis_server.url  # the settings role works
    with pytest.raises(BeaconError) as err:
        resolve_url(role="data")
    message = str(err.value)
    one_line_error(message)
    assert f"the Beacon server at {host} (BEACON_HOST) names no data Redis" in message
    assert DATA_ENV_VAR in message
    # What the message says to set works, and leaves the settings role with Beacon.
    beacon_env.setenv(DATA_ENV_VAR, own_redis.url)
    assert resolve_url(role="data") == own_redis.url
    assert explain(role="data").source == DATA_ENV_VAR
    assert explain(role="settings").source == "BEACON_HOST"


def test_beacon_data_server_and_tcp_addresses(beacon_env, stand_in_beacon):
    host = stand_in_beacon("beamline-redis:6379", "ok", "beamline-data:6380")
    answer = ask_beacon(parse_beacon_host(host))
    assert (answer.settings_url, answer.data_url) == ("redis://beamline-redis:6379",
                                                      "redis://beamline-data:6380")


def test_silent_beacon_times_out_on_the_data_query(stand_in_beacon, redis_server):
    host = stand_in_beacon(f"localhost:{redis_server.socket_path}", "silent")
    answer = ask_beacon(parse_beacon_host(host), timeout=0.5)
    assert answer.settings_url == redis_server.url and answer.data_url is None
    assert "no answer" in answer.data_error


def test_redis_named_by_beacon_unreachable(beacon_env, stand_in_beacon, tmp_path):
    from beacon_ipy.channels import Channel

    gone = tmp_path / "gone.sock"
    host = stand_in_beacon(f"localhost:{gone}", "ok", f"localhost:{gone}")
    beacon_env.setenv("BEACON_HOST", host)
    with pytest.raises(RedisUnavailableError) as err:
        Channel("test_beacon_client:x")
    message = str(err.value)
    one_line_error(message)
    assert message.startswith(f"cannot reach the settings Redis at unix://{gone} (named by "
                              f"the Beacon server at {host} (BEACON_HOST))")
    assert "beacon-server" in message and ENV_VAR in message


def test_precedence_table(beacon_env, stand_in_beacon, redis_server, own_redis):
    host = stand_in_beacon(f"localhost:{redis_server.socket_path}", "ok",
                           f"localhost:{redis_server.socket_path}")
    beacon_env.setenv("BEACON_HOST", host)
    assert [explain(role=r).source for r in ("settings", "data")] == ["BEACON_HOST"] * 2
    beacon_env.setenv(ENV_VAR, own_redis.url)  # BEACON_REDIS_URL: both roles, above Beacon
    assert [explain(role=r).url for r in ("settings", "data")] == [own_redis.url] * 2
    beacon_env.setenv(DATA_ENV_VAR, "redis://data-host:6380")  # data role only
    assert explain(role="data").url == "redis://data-host:6380"
    assert explain(role="settings").url == own_redis.url
    set_default_url("redis://process:1", role="data")  # the process's choice beats the env
    assert explain(role="data").source == "process"
    assert explain("redis://arg:2", role="data").source == "argument"
    set_default_url("redis://both:3")
    assert {explain(role=r).url for r in ("settings", "data")} == {"redis://both:3"}
    with pytest.raises(ValueError, match="role"):
        explain(role="scans")


def test_where_with_redis_url_option(own_redis, beacon_env):
    beacon_env.setenv("BEACON_HOST", f"localhost:{free_port()}")  # beaten by --redis-url
    done = subprocess.run([sys.executable, "-m", "beacon_ipy.cli", "--redis-url", own_redis.url,
                           "where"], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2
    for role, line in zip(("settings", "data"), lines, strict=True):
        assert line.split()[:2] == [role, own_redis.url]
        assert "--redis-url" in line and line.endswith("answers")
