"""The runner: follows a session (or one scan) on blissdata and drives ScanConsumers.

Its rules are documented in :mod:`beacon_ipy.scans.consumer`.
"""

from __future__ import annotations

from collections.abc import Sequence

from beacon_ipy.scans.consumer import DEFAULT_IDLE_LIMIT, ScanConsumer

RECONNECT_TIMEOUT = 30.0


class ScanRunner:
    """Follows scans and calls its consumers' methods (see :mod:`.consumer`).

    ``session``: follow that session's scans (or ``scan_key``: only that scan).
    ``url``: the data Redis (default: the configured/embedded one). ``from_next``: only
    scans created from now on. ``idle_limit``: the dead-producer limit for foreign
    producers (s, None = never). ``stop_handler``: a StopHandler whose ``stop()`` ends
    ``run()``. ``timeout``: ``run()`` returns after that many seconds.
    ``started_event``: set once the runner has taken its starting point (scans created
    after that are delivered).
    """

    def __init__(self, consumers: ScanConsumer | Sequence[ScanConsumer], *,
                 session: str | None = None, scan_key: str | None = None,
                 url: str | None = None, from_next: bool = True,
                 idle_limit: float | None = DEFAULT_IDLE_LIMIT,
                 reconnect_timeout: float = RECONNECT_TIMEOUT,
                 stop_handler=None, timeout: float | None = None, started_event=None):
        raise NotImplementedError("implementation follows (consumer-api commit)")

    def run(self) -> None:
        """Follow scans until stopped, timed out, or (``scan_key``) the scan ended."""

    def step(self, block: bool = True) -> bool:
        """Process what is available (waiting for something if ``block``); False once
        the runner is finished."""
        return False

    def spawn(self):
        """``run()`` in a new greenlet, returned."""

    def stop(self) -> None:
        """End ``run()`` from any greenlet or thread."""
