"""The seed's walks as a consumer of the runner: ``(event_type, node, event_data)`` tuples.

A walk is a generator that steps a :class:`~beacon_ipy.scans.runner.ScanRunner` and
yields what a :class:`WalkConsumer` collected: there is one way to consume scans, the
walks are only a different shape of it.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from beacon_ipy.scans.consumer import ScanConsumer
from beacon_ipy.scans.events import EventType, NewNode
from beacon_ipy.scans.nodes import NodeFilter, ScanNode, SessionNode
from beacon_ipy.scans.runner import ScanRunner

NODE_TYPES = ("scan", "channel", "lima")


class NodeFilterSpec:
    """``include_filter`` normalised: ``accepts(node)`` and whether data must be read."""

    def __init__(self, include_filter: NodeFilter):
        self.func: Callable[[Any], bool] | None = None
        if include_filter is None:
            self.types = set(NODE_TYPES)
        elif isinstance(include_filter, str):
            self.types = {include_filter}
        elif callable(include_filter):
            self.func = include_filter
            self.types = set(NODE_TYPES)
        else:
            self.types = set(include_filter)
        unknown = self.types - set(NODE_TYPES)
        if unknown:
            raise ValueError(f"include_filter names unknown node types {sorted(unknown)}; "
                             f"use {NODE_TYPES}, a sequence of them, or a callable")
        self.descend = bool(self.types & {"channel", "lima"})

    def accepts(self, node) -> bool:
        if self.func is not None:
            return bool(self.func(node))
        return node.type in self.types


class WalkConsumer(ScanConsumer):
    """Turns consumer calls into the seed's event tuples, filtered, in a queue."""

    def __init__(self, flt: NodeFilterSpec, redis_url: str | None, scan_node: ScanNode | None):
        self.flt = flt
        self.wants_data = flt.descend
        self.redis_url = redis_url
        self.events: deque[tuple] = deque()
        self.nodes: dict[str, ScanNode] = {}
        if scan_node is not None:
            self.nodes[scan_node.key] = scan_node
        self.single = scan_node is not None

    def _node(self, scan) -> ScanNode:
        node = self.nodes.get(scan.key)
        if node is None:
            node = self.nodes[scan.key] = ScanNode(scan, self.redis_url)
        else:
            node.handle = scan
        return node

    def _emit(self, event_type, node, data) -> None:
        if self.flt.accepts(node):
            self.events.append((event_type, node, data))

    def new_scan(self, scan):
        node = self._node(scan)
        if not self.single:
            self._emit(EventType.NEW_NODE, node, NewNode(scan.key))

    def new_stream(self, scan, stream):
        node = self._node(scan)
        self._emit(EventType.NEW_NODE, node.node_for(stream), NewNode(scan.key))

    def new_data(self, scan, stream, block):
        self._emit(EventType.NEW_DATA, self._node(scan).node_for(stream), block)

    def end_scan(self, scan, end):
        node = self.nodes.pop(scan.key, None) or ScanNode(scan, self.redis_url)
        if "h5maps" in end.info:  # as node.info: scan_info without the writer's layout
            end = dataclasses.replace(end, info=dict(node.info))
        self._emit(EventType.END_SCAN, node, end)


def _walk(runner: ScanRunner, consumer: WalkConsumer, wait: bool) -> Iterator[tuple]:
    events = consumer.events
    runner.stop_handler._register(runner._reader)
    try:
        while True:
            more = runner.step(block=wait)
            while events:
                yield events.popleft()
            if not more:
                return
            if not wait and not runner.busy:
                return
    finally:
        runner.stop_handler._unregister(runner._reader)
        runner.close()


def walk_scan(scan: ScanNode, *, wait: bool, include_filter: NodeFilter, stop_handler,
              timeout: float | None, started_event) -> Iterator[tuple]:
    consumer = WalkConsumer(NodeFilterSpec(include_filter), scan.redis_url, scan)
    runner = ScanRunner(consumer, scan_key=scan.key, url=scan.redis_url,
                        stop_handler=stop_handler, timeout=timeout,
                        started_event=started_event)
    return _walk(runner, consumer, wait)


def walk_session(session: SessionNode, *, include_filter: NodeFilter, from_next: bool,
                 stop_handler, timeout: float | None, started_event) -> Iterator[tuple]:
    consumer = WalkConsumer(NodeFilterSpec(include_filter), session.redis_url, None)
    runner = ScanRunner(consumer, session=session.name, url=session.redis_url,
                        from_next=from_next, stop_handler=stop_handler, timeout=timeout,
                        started_event=started_event)
    return _walk(runner, consumer, wait=True)
