"""Scan data over Redis streams: a producer API and the BLISS-style listener API.

Producer (an acquisition program)::

    from beacon_ipy.scans import ChannelSpec, LimaSpec, create_scan
    with create_scan("demo", scan_info, [ChannelSpec("diode")]) as scan:
        scan.push({"diode": [1.0, 2.0]})

Listener (the seed's external-saving API)::

    from beacon_ipy.scans import get_session_node
    session = get_session_node("demo")
    for event_type, node, event_data in session.walk_on_new_events(include_filter="scan"):
        ...

Key layout, entry formats and the lifecycle/retention rules: docs/scan_data.md.
"""

from beacon_ipy.scans.errors import (
    ScanDataError,
    ScanDeclaredDeadError,
    ScanExpiredError,
    ScanStateError,
)
from beacon_ipy.scans.events import (
    ChannelData,
    EndReason,
    EventType,
    ImageData,
    ImageRef,
    NewNode,
    ScanEnd,
)
from beacon_ipy.scans.nodes import (
    DEFAULT_HOLD_TTL,
    ChannelNode,
    LimaNode,
    ScanNode,
    SessionNode,
    get_session_node,
)
from beacon_ipy.scans.producer import (
    DEFAULT_EXPIRE_AFTER_END,
    DEFAULT_HEARTBEAT,
    DEFAULT_MAX_SCANS,
    ChannelSpec,
    LimaSpec,
    ScanPublisher,
    create_scan,
)
from beacon_ipy.scans.pusher import ProducerConnectionError
from beacon_ipy.scans.reader import StopHandler

__all__ = [
    "DEFAULT_EXPIRE_AFTER_END",
    "DEFAULT_HEARTBEAT",
    "DEFAULT_HOLD_TTL",
    "DEFAULT_MAX_SCANS",
    "ChannelData",
    "ChannelNode",
    "ChannelSpec",
    "EndReason",
    "EventType",
    "ImageData",
    "ImageRef",
    "LimaNode",
    "LimaSpec",
    "NewNode",
    "ProducerConnectionError",
    "ScanDataError",
    "ScanDeclaredDeadError",
    "ScanEnd",
    "ScanExpiredError",
    "ScanNode",
    "ScanPublisher",
    "ScanStateError",
    "SessionNode",
    "StopHandler",
    "create_scan",
    "get_session_node",
]
