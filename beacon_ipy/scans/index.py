"""Where each node's points are in a scan's stream, so that ``get(start, stop)`` is cheap.

Built incrementally by reading the stream once (``XRANGE`` from the last indexed entry),
the index maps every block of a node to the id of the entry that carries it. A read then
fetches only the entries covering the requested range. Memory: three integers per block.
"""

from __future__ import annotations

import bisect
from array import array
from typing import TYPE_CHECKING

from beacon_ipy.scans.entries import MalformedEntry, by_key, parse_data_fields

if TYPE_CHECKING:
    from beacon_ipy.scans.nodes import ScanNode

CHUNK = 1000


class NodeIndex:
    """Blocks of one node: their end indices and the ids of their entries."""

    __slots__ = ("stops", "ms", "seq", "runs")

    def __init__(self):
        self.stops = array("q")
        self.ms = array("Q")
        self.seq = array("Q")
        self.runs: list[tuple[int, str, str, int, int]] = []  # lima: (start, file, path, first, n)

    @property
    def count(self) -> int:
        return self.stops[-1] if self.stops else 0

    def entry_id(self, k: int) -> str:
        return f"{self.ms[k]}-{self.seq[k]}"

    def blocks(self, start: int, stop: int) -> tuple[int, int]:
        """Block numbers ``k0..k1`` (inclusive) covering points ``start..stop-1``."""
        return bisect.bisect_right(self.stops, start), bisect.bisect_left(self.stops, stop)

    def block_start(self, k: int) -> int:
        return self.stops[k - 1] if k else 0


class ScanIndex:
    """Index of all nodes of one scan; :meth:`update` reads what was added since."""

    def __init__(self, scan: ScanNode):
        self.scan = scan
        self.last_id = "0-0"
        self.nodes: dict[int, NodeIndex] = {}
        self.expected: dict[int, int] = {}
        self.ended = False

    def node(self, idx: int) -> NodeIndex:
        found = self.nodes.get(idx)
        if found is None:
            found = self.nodes[idx] = NodeIndex()
        return found

    def update(self) -> None:
        if self.ended:
            return
        redis = self.scan._redis
        key = self.scan.keys.data
        nodes = by_key(self.scan._nodes_by_index())
        first = self.last_id == "0-0"
        while True:
            start = "-" if self.last_id == "0-0" else f"({self.last_id}"
            entries = redis.xrange(key, start, "+", count=CHUNK)
            if not entries:
                if first:
                    self.scan._check_exists()
                return
            first = False
            for entry_id, fields in entries:
                self._add(entry_id, fields, nodes)
                if self.ended:
                    return
            self.last_id = entries[-1][0].decode()
            if len(entries) < CHUNK:
                return

    def _add(self, entry_id: bytes, fields: dict, nodes: dict) -> None:
        kind = fields.get(b"t")
        if kind == b"end":
            self.ended = True
            self.last_id = entry_id.decode()
            return
        if kind == b"node":
            nodes.update(by_key(self.scan._nodes_by_index(refresh=True)))
            return
        if kind != b"data":
            return
        flat: list = [b"t", b"data"]
        for name, value in fields.items():
            if name != b"t":
                flat += [name, value]
        for node in nodes.values():
            self.expected.setdefault(node.idx, 0)
        try:
            items = parse_data_fields(flat, nodes, self.expected)
        except MalformedEntry:
            return  # the walker reports malformed entries; the index just skips them
        ms, seq = (int(x) for x in entry_id.split(b"-"))
        for node, start, stop, value in items:
            self.expected[node.idx] = stop
            ni = self.node(node.idx)
            ni.stops.append(stop)
            ni.ms.append(ms)
            ni.seq.append(seq)
            if node.type == "lima":
                pos = start
                for f, p, first, n in value:
                    ni.runs.append((pos, f, p, first, n))
                    pos += n
