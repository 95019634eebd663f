"""The peer side of the test <-> peer pipe, shared by the channel peers: JSON lines out
(values tagged by :mod:`jsoncodec`), one command per line in, until EOF."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

import jsoncodec


def say(**msg: Any) -> None:
    """One JSON line to the test."""
    sys.stdout.write(json.dumps(jsoncodec.encode(msg)) + "\n")
    sys.stdout.flush()


def commands(stream) -> Iterator[dict]:
    """The test's commands, decoded, one per line of ``stream`` (binary), until EOF."""
    for line in iter(stream.readline, b""):
        yield jsoncodec.decode(json.loads(line))


def monkey_patched() -> bool:
    """True in a gevent-monkey-patched process (as BLISS processes and the kernel are)."""
    return "gevent" in repr(__import__("socket").socket)
