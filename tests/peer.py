"""Run and talk to real subprocess peers from tests, without blocking the gevent hub.

A peer is a Python script that prints one line per event on stdout. Reads go through
``gevent.subprocess`` so that the test process's own greenlets (channel listeners,
walkers) keep running while a test waits for a peer's line; every wait has a deadline.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import gevent
from gevent import subprocess

PEERS_DIR = Path(__file__).parent / "peers"


class Peer:
    """A subprocess speaking line-delimited JSON on stdin/stdout."""

    def __init__(self, script: str | Path, *args: str, python: str | None = None,
                 env: dict | None = None, patch: bool = False):
        script = Path(script)
        if not script.is_absolute():
            script = PEERS_DIR / script
        full_env = dict(os.environ)
        full_env.update(env or {})
        full_env["PYTHONUNBUFFERED"] = "1"
        if patch:
            full_env["PEER_MONKEY_PATCH"] = "1"
        self.args = [python or sys.executable, str(script), *args]
        self.proc = subprocess.Popen(self.args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=full_env, text=True)

    def send(self, **command) -> None:
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()

    def read(self, timeout: float = 20.0) -> dict:
        """The next JSON line from the peer, or raise with its stderr on timeout/exit."""
        with gevent.Timeout(timeout, False):
            line = self.proc.stdout.readline()
            if line:
                return json.loads(line)
            raise RuntimeError(f"peer {self.args} exited ({self.proc.wait()}): {self.stderr()}")
        raise TimeoutError(f"peer {self.args} said nothing within {timeout} s: {self.stderr()}")

    def expect(self, event: str, timeout: float = 20.0) -> dict:
        """Read lines until one with ``{"event": event}``; return it."""
        with gevent.Timeout(timeout, TimeoutError(f"peer never said {event!r}")):
            while True:
                msg = self.read(timeout)
                if msg.get("event") == event:
                    return msg
                if msg.get("event") == "error":
                    raise RuntimeError(f"peer error: {msg}")

    def request(self, timeout: float = 20.0, **command) -> dict:
        """Send a command and return the peer's reply (``{"event": "reply"...}``)."""
        self.send(**command)
        return self.expect("reply", timeout)

    def stderr(self) -> str:
        if self.proc.poll() is None:
            return "(still running)"
        return self.proc.stderr.read()

    def close(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            try:
                self.send(cmd="exit")
            except (BrokenPipeError, OSError):
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def cmd(peer: Peer, **command) -> dict:
    """``peer.request`` with the values tagged by jsoncodec (numpy arrays, tuples...)."""
    from peers import jsoncodec

    return peer.request(**{k: jsoncodec.encode(v) for k, v in command.items()})
