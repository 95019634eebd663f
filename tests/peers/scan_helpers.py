"""Helpers shared by the scan-data tests (not a peer script): collect walks with deadlines."""

from __future__ import annotations

import time
import uuid

import gevent
import gevent.event


def new_session() -> str:
    """A session name no other test uses."""
    return f"t{uuid.uuid4().hex[:10]}"


def wait_for(condition, timeout: float = 10.0, what: str = "condition"):
    """Poll ``condition`` (yielding to gevent) until truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        gevent.sleep(0.005)


class Collector:
    """Runs a walk in a greenlet and keeps its events; ``started`` is set when it listens."""

    def __init__(self, make_walk, stop_at_end: int | None = None):
        self.events: list[tuple] = []
        self.started = gevent.event.Event()
        self.done = gevent.event.Event()
        self.stop_at_end = stop_at_end
        self._make_walk = make_walk
        self.greenlet = gevent.spawn(self._run)
        if not self.started.wait(10):
            raise AssertionError("walk did not start")

    def _run(self):
        ends = 0
        try:
            for event in self._make_walk(self.started):
                self.events.append(event)
                if event[0] == "END_SCAN":
                    ends += 1
                    if self.stop_at_end is not None and ends >= self.stop_at_end:
                        return
        finally:
            self.started.set()
            self.done.set()

    def wait(self, timeout: float = 15.0) -> list[tuple]:
        if not self.done.wait(timeout):
            raise AssertionError(f"walk not finished after {timeout} s; got "
                                 f"{[(e[0], e[1].name) for e in self.events][-10:]}")
        self.greenlet.get()  # re-raise an error of the walk
        return self.events

    def wait_for(self, predicate, timeout: float = 10.0, what: str = "event"):
        return wait_for(lambda: any(predicate(e) for e in self.events), timeout, what)

    def kinds(self) -> list[tuple[str, str]]:
        return [(str(e[0]), e[1].name) for e in self.events]
