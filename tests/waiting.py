"""Deadline-bounded waiting for tests: poll a condition while the gevent hub runs."""

from __future__ import annotations

import time
from collections.abc import Callable

import gevent


def wait_for(condition: Callable[[], object], timeout: float = 10.0, what: str = "condition",
             interval: float = 0.002):
    """Return condition()'s first truthy value; raise AssertionError after ``timeout``.

    Yields to gevent between polls so listeners/walkers in this process keep running.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        gevent.sleep(interval)
