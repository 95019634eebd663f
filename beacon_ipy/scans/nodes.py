"""The seed's listener API (BLISS 1.x style nodes) over any blissdata 2.x producer.

``get_session_node(name)`` -> :class:`SessionNode` (session = the scan identity's
``session``); its scans are :class:`ScanNode`; a scan's streams are :class:`ChannelNode`
(0d/1d numeric streams, ``get(start, stop)``) and :class:`LimaNode` (image streams,
``get_references``, ``get_image(i)``). Walks (``walk_on_new_events``, ``walk_events``)
are a consumer of the one :class:`~beacon_ipy.scans.runner.ScanRunner` (:mod:`.walker`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from beacon_ipy.scans import bdgaps
from beacon_ipy.scans.errors import ScanExpiredError
from beacon_ipy.scans.events import ImageRef, ScanEnd
from beacon_ipy.scans.handle import ScanHandle
from beacon_ipy.scans.streams import StreamDescription

NodeFilter = str | Sequence[str] | Callable[[Any], bool] | None


class _DataNode:
    """What channel and lima nodes share: their scan, name, dtype, shape, unit."""

    type = ""

    def __init__(self, scan: ScanNode, stream: StreamDescription):
        self.scan = scan
        self.parent = scan
        self.stream = stream
        self.name = stream.name
        self.dtype = stream.dtype
        self.shape = stream.shape
        self.unit = stream.unit
        self.display_name = stream.display_name
        self.info = dict(stream.info)

    def __len__(self) -> int:
        """Number of points (images) that have arrived."""
        return self.scan.handle.count(self.name)

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} {self.name!r} {self.dtype}{list(self.shape)} of "
                f"{self.scan.name}>")


class ChannelNode(_DataNode):
    """A 0d or 1d stream of a scan: one value or one array per point."""

    type = "channel"

    def get(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Points ``start`` to ``stop`` (exclusive; slice rules over what has arrived) as an
        array of shape ``(n, *shape)``. Unlike BLISS 1's ``get(from, to)``, ``stop`` is
        exclusive. Trimmed points raise ``ScanDataTrimmedError``."""
        return self.scan.handle.get(self.name, start, stop)


class LimaNode(_DataNode):
    """An image stream: frames live in the detector's HDF5 files; Redis has their count."""

    type = "lima"

    def get_references(self, start: int = 0, stop: int | None = None) -> list[ImageRef]:
        """``(file, dataset_path, index)`` of images ``start..stop`` (exclusive)."""
        return self.scan.handle.references(self.name, start, stop)

    get = get_references

    def get_image(self, index: int) -> np.ndarray:
        """Frame ``index`` (negative from the end), read from the detector's file."""
        return self.scan.handle.get_image(self.name, index)


class ScanNode:
    """A scan: ``info`` is its scan_info, its nodes are channel and lima nodes."""

    type = "scan"

    def __init__(self, handle: ScanHandle, redis_url: str | None = None):
        self.handle = handle
        self.redis_url = redis_url
        self._nodes: dict[str, ChannelNode | LimaNode] = {}
        self._info_source: dict | None = None
        self._info: dict[str, Any] = {}

    @property
    def name(self) -> str:
        """Node name, ``"<number>_<type>"`` (e.g. ``"3_ascan"``)."""
        return self.handle.node_name

    @property
    def key(self) -> str:
        return self.handle.key

    uid = key

    @property
    def session(self) -> str:
        return self.handle.session

    @property
    def scan_nb(self) -> int:
        return self.handle.number

    @property
    def info(self) -> dict[str, Any]:
        """The scan_info, without ``h5maps`` (the writer's file layout, which BLISS 1's
        scan_info never had: the seed's consumers dump scan_info into files). The full
        dict is ``node.handle.info``."""
        info = self.handle.info
        if "h5maps" not in info:
            return info
        if self._info_source is not info:
            self._info_source = info
            self._info = {k: v for k, v in info.items() if k != "h5maps"}
        return self._info

    scan_info = info

    @property
    def state(self):
        """blissdata's ``ScanState`` (read now)."""
        self.handle.update()
        return self.handle.state

    @property
    def end(self) -> ScanEnd | None:
        """How the scan ended, None while it runs (read now)."""
        from blissdata import ScanState

        if self.handle.end is None and self.state == ScanState.CLOSED:
            from beacon_ipy.scans.events import EndReason

            reason = EndReason.from_info(self.info.get("end_reason", "SUCCESS"))
            counts = {n: self.handle.count(n) for n in self.handle.streams}
            return ScanEnd(reason.value, "producer", 0.0, counts, dict(self.info))
        end = self.handle.end
        if end is not None and "h5maps" in end.info:
            end = dataclasses.replace(end, info=dict(self.info))
        return end

    @property
    def end_reason(self) -> str | None:
        end = self.end
        return end.reason if end else None

    def exists(self) -> bool:
        return self.handle.exists()

    def node_for(self, stream: StreamDescription) -> ChannelNode | LimaNode:
        node = self._nodes.get(stream.name)
        if node is None:
            node = (LimaNode if stream.is_image else ChannelNode)(self, stream)
            self._nodes[stream.name] = node
        return node

    @property
    def nodes(self) -> dict[str, ChannelNode | LimaNode]:
        """Channel and lima nodes, by name, in declaration order."""
        self.handle.update()
        descs = self.handle.streams
        return {n: self.node_for(descs[n]) for n in self.handle.stream_names()}

    def get_node(self, name: str) -> ChannelNode | LimaNode:
        nodes = self.nodes
        if name not in nodes:
            raise KeyError(f"scan {self.name} has no node {name!r}; it has {list(nodes)}")
        return nodes[name]

    def walk_events(self, *, wait: bool = True, include_filter: NodeFilter = None,
                    stop_handler=None, timeout: float | None = None, started_event=None,
                    **_ignored) -> Iterator[tuple]:
        """Yield ``(event_type, node, event_data)`` for this scan, from its beginning.

        NEW_NODE for each channel/lima node, NEW_DATA with new blocks, END_SCAN last
        (never before data published before it). ``wait=False``: stop at the end of
        what exists now. ``timeout``: end the walk (quietly) after that many seconds.
        ``stop_handler``: a StopHandler whose ``stop()`` ends the walk.
        """
        from beacon_ipy.scans.walker import walk_scan

        return walk_scan(self, wait=wait, include_filter=include_filter,
                         stop_handler=stop_handler, timeout=timeout,
                         started_event=started_event)

    def __repr__(self) -> str:
        return f"<ScanNode {self.session}/{self.scan_nb} {self.key}>"

    def __eq__(self, other) -> bool:
        return isinstance(other, ScanNode) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)


class SessionNode:
    """A session: its scans, and walks over what happens in them."""

    type = "session"

    def __init__(self, name: str, redis_url: str | None = None):
        if not name or not isinstance(name, str):
            raise ValueError(f"a session name must be a non-empty string, not {name!r}")
        self.name = name
        self.redis_url = redis_url
        self.info: dict[str, Any] = {"name": name}

    @property
    def store(self):
        return bdgaps.data_store(self.redis_url)

    def scan_keys(self) -> list[str]:
        """Keys of the session's scans still in Redis, oldest first."""
        _, keys = self.store.search_existing_scans(session=self.name)
        return sorted(keys)

    def scans(self) -> list[ScanNode]:
        """The scans still in Redis (running or ended), oldest first."""
        from blissdata.exceptions import ScanNotFoundError

        out = []
        for key in self.scan_keys():
            try:
                out.append(self.scan_from_key(key))
            except ScanNotFoundError:
                continue
        return out

    def scan_numbers(self) -> list[int]:
        return [s.scan_nb for s in self.scans()]

    def scan_from_key(self, key: str) -> ScanNode:
        store = self.store
        return ScanNode(ScanHandle(store, bdgaps.load_scan(store, key)), self.redis_url)

    def get_scan(self, scan_nb: int) -> ScanNode:
        """Scan number ``scan_nb`` (the newest if several); :class:`ScanExpiredError` if
        it is not in Redis."""
        from blissdata.exceptions import ScanNotFoundError

        _, keys = self.store.search_existing_scans(session=self.name, number=int(scan_nb))
        for key in sorted(keys, reverse=True):
            try:
                return self.scan_from_key(key)
            except ScanNotFoundError:
                continue
        raise ScanExpiredError(self.name, scan_nb)

    def walk_on_new_events(self, include_filter: NodeFilter = None, from_next: bool = False,
                           *, stop_handler=None, timeout: float | None = None,
                           started_event=None, **_ignored) -> Iterator[tuple]:
        """Yield ``(event_type, node, event_data)`` for what happens in this session.

        ``include_filter``: a node type (``"scan"``, ``"channel"``, ``"lima"``), a
        sequence of them, or a callable ``node -> bool``; ``None`` = everything. With
        ``"scan"`` alone, data streams are not read at all (cheap).
        ``from_next=False`` first replays the scans still in Redis (and their data for
        channel/lima filters); ``from_next=True`` yields only scans created from now on.
        ``started_event`` (anything with ``set()``) is set once the walk has taken its
        starting point.
        """
        from beacon_ipy.scans.walker import walk_session

        return walk_session(self, include_filter=include_filter, from_next=from_next,
                            stop_handler=stop_handler, timeout=timeout,
                            started_event=started_event)

    def __repr__(self) -> str:
        return f"<SessionNode {self.name}>"


def get_session_node(name: str, redis_url: str | None = None) -> SessionNode:
    """The session node ``name`` (the entry point of the listener API)."""
    return SessionNode(name, redis_url)
