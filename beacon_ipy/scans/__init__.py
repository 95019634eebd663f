"""Scan data: blissdata 2.x underneath, one consumer interface, the seed's listener API on top.

Consumers (the one way to consume scans; rules in :mod:`beacon_ipy.scans.consumer`)::

    from beacon_ipy.scans import ScanConsumer, ScanRunner
    class Saver(ScanConsumer):
        def new_scan(self, scan): ...
        def new_stream(self, scan, stream): ...
        def new_data(self, scan, stream, block): ...
        def end_scan(self, scan, end): ...
    ScanRunner(Saver(), session="demo").run()

Listener (the seed's external-saving API, over any blissdata producer, BLISS included)::

    from beacon_ipy.scans import get_session_node
    for event_type, node, event_data in get_session_node("demo").walk_on_new_events(
            include_filter="scan", from_next=True):
        ...

Producer (a thin layer over blissdata scans, BLISS-shaped scan_info and h5maps)::

    from beacon_ipy.scans import StreamDescription, create_scan
    with create_scan("demo", {"type": "ascan"}, [StreamDescription.scalar("diode")]) as s:
        s.push({"diode": [1.0, 2.0]})

docs/scan_data.md: what is blissdata's, what is beacon-ipy's, the gaps wrapped.
"""

from blissdata import ScanState

from beacon_ipy.scans.consumer import DEFAULT_IDLE_LIMIT, CallbackConsumer, ScanConsumer
from beacon_ipy.scans.errors import (
    ScanDataError,
    ScanDataTrimmedError,
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
from beacon_ipy.scans.handle import ScanHandle, read_frame
from beacon_ipy.scans.nodes import (
    ChannelNode,
    LimaNode,
    ScanNode,
    SessionNode,
    get_session_node,
)
from beacon_ipy.scans.producer import (
    DEFAULT_HEARTBEAT,
    ScanPublisher,
    create_scan,
    reserve_scan_number,
)
from beacon_ipy.scans.reader import StopHandler
from beacon_ipy.scans.runner import ScanRunner
from beacon_ipy.scans.streams import ImageFiles, StreamDescription, StreamKind

__all__ = [
    "DEFAULT_HEARTBEAT",
    "DEFAULT_IDLE_LIMIT",
    "CallbackConsumer",
    "ChannelData",
    "ChannelNode",
    "EndReason",
    "EventType",
    "ImageData",
    "ImageFiles",
    "ImageRef",
    "LimaNode",
    "NewNode",
    "ScanConsumer",
    "ScanDataError",
    "ScanDataTrimmedError",
    "ScanEnd",
    "ScanExpiredError",
    "ScanHandle",
    "ScanNode",
    "ScanPublisher",
    "ScanRunner",
    "ScanState",
    "ScanStateError",
    "SessionNode",
    "StopHandler",
    "StreamDescription",
    "StreamKind",
    "create_scan",
    "reserve_scan_number",
    "get_session_node",
    "read_frame",
]
