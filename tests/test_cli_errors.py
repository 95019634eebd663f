"""Configuration errors end every ``beacon-ipy`` command with one line and exit status 2,
and a refused ``beacon-ipy save`` leaves nothing behind (issue 12, §3)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest


def beacon_ipy(*args: str, env: dict[str, str] | None = None,
               cwd: Path | None = None) -> subprocess.CompletedProcess:
    full_env = dict(os.environ)
    full_env.pop("BEACON_IPY_DEBUG", None)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "beacon_ipy.cli", *args], env=full_env,
                          cwd=cwd, capture_output=True, text=True, timeout=120)


def closed_port() -> int:
    """A local TCP port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_one_line(done: subprocess.CompletedProcess, *fragments: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("command", [
    ["demo", "--session", "cli-errors", "--scans", "1"],
    ["save", "--session", "cli-errors", "--dir", "{tmp}/data"],
    ["channel-demo"],
    ["lab", "--dir", "{tmp}/notebooks", "--dry-run"],
])
def test_an_unusable_redis_url_is_one_line_and_exit_2(command, tmp_path):
    args = [a.format(tmp=tmp_path) for a in command]
    done = beacon_ipy(*args, env={"BEACON_REDIS_URL": "http://x",
                                  "XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert_one_line(done, f"beacon-ipy {command[0]}:", "BEACON_REDIS_URL", "http://x",
                    "redis://")
    done = beacon_ipy("--redis-url", "http://y", *args,
                      env={"XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert_one_line(done, f"beacon-ipy {command[0]}:", "http://y", "redis://")
    assert not (tmp_path / "data").exists()


def test_a_refused_save_leaves_no_folder_and_no_lock_file(tmp_path):
    unreachable = f"redis://127.0.0.1:{closed_port()}"
    target = tmp_path / "new" / "data"
    done = beacon_ipy("--redis-url", unreachable, "save", "--session", "refused", "--dir",
                      str(target))
    assert_one_line(done, "beacon-ipy save:", "127.0.0.1")
    assert not (tmp_path / "new").exists(), sorted(tmp_path.rglob("*"))
    # an existing folder stays, with nothing added to it
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "mine.txt").write_text("keep me")
    done = beacon_ipy("--redis-url", unreachable, "save", "--session", "refused", "--dir",
                      str(existing))
    assert_one_line(done, "beacon-ipy save:")
    assert sorted(p.name for p in existing.iterdir()) == ["mine.txt"]


def test_other_commands_reject_unknown_options_but_lab_passes_them_on(tmp_path):
    done = beacon_ipy("demo", "--allow-root")
    assert done.returncode == 2 and "unrecognized arguments: --allow-root" in done.stderr
