"""The channel hot path's shortcuts keep behaviour: real server, real messages."""

from __future__ import annotations

import logging
import uuid

from beacon_ipy.channels.subscriber import SubscriberConnection
from beacon_ipy.connection import new_client


def test_subscriber_reads_pushes_without_logging_each(redis_url, caplog):
    """Messages arrive unchanged, and redis-py's per-message debug logging is skipped."""
    name = f"speed-{uuid.uuid4().hex[:8]}"
    warnings = []
    sub = SubscriberConnection(redis_url, list, lambda *args: warnings.append(args))
    caplog.set_level(logging.DEBUG)
    sub.connect()
    try:
        sub.subscribe(name)
        assert sub.read() is None  # the confirmation
        assert sub.wait_subscribed(name, 0)
        payload = b"\x00binary\xffpayload" * 10
        assert new_client(redis_url).publish(name, payload) == 1
        assert sub.read() == (name, payload)
    finally:
        sub.disconnect()
    assert warnings == []
    assert not [r for r in caplog.records if r.name == "push_response"]
