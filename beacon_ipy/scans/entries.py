"""Scan stream entries -> events: parsing, validation, merging of consecutive blocks.

Entry formats on ``bipy:scan:<S>:<nb>:data`` (field/value pairs, bytes):

* ``t=node i=<idx> name=<name> type=channel|lima info=<tagged JSON>``
* ``t=data <idx>:<start>=<payload> ...`` one pair per node in the push; a channel payload
  is the raw C-order bytes of ``n`` points of the declared dtype/shape, a lima payload
  is JSON ``[[file, dataset_path, first_frame, count], ...]``
* ``t=end reason=<R> by=producer|watchdog time=<unix s> counts=<JSON> info=<tagged JSON>``

An entry that does not parse, names an unknown node, has a payload of the wrong size or
does not continue its node's index is skipped with a warning (logger
``beacon_ipy.scans``); the walk continues.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from beacon_ipy.scans import encoding
from beacon_ipy.scans.events import (
    EventType,
    ImageRef,
    NewNode,
    ScanEnd,
    make_channel_data,
    make_image_data,
)

if TYPE_CHECKING:
    from beacon_ipy.scans.nodes import ScanNode

log = logging.getLogger("beacon_ipy.scans")

NEW_NODE, NEW_DATA, END_SCAN = EventType.NEW_NODE, EventType.NEW_DATA, EventType.END_SCAN


class MalformedEntry(ValueError):
    """Why an entry was skipped."""


def parse_runs(payload: bytes) -> tuple[list[tuple[str, str, int, int]], int]:
    """Decode a lima payload into runs ``(file, path, first, count)`` and the image count."""
    try:
        runs = json.loads(payload)
        out = [(str(f), str(p), int(first), int(n)) for f, p, first, n in runs]
    except (ValueError, TypeError) as exc:
        raise MalformedEntry(f"bad image references: {exc}") from None
    if not out or any(n < 1 or first < 0 for _, _, first, n in out):
        raise MalformedEntry("image references with no image or a negative index")
    return out, sum(n for *_, n in out)


def by_key(nodes_by_index: dict[int, Any]) -> dict[bytes, Any]:
    """Nodes keyed as in data field names (``b"3"``)."""
    return {str(idx).encode(): node for idx, node in nodes_by_index.items()}


def expand_runs(runs) -> list[ImageRef]:
    return [ImageRef(f, p, first + k) for f, p, first, n in runs for k in range(n)]


def parse_data_fields(fields: list, nodes: dict[bytes, Any], expected: dict[int, int]):
    """Validate the node/payload pairs of a data entry -> list of (node, start, stop, payload).

    ``nodes`` maps the node index as it appears in field names (``b"3"``) to the node;
    ``expected`` maps node index to the index the node must continue from (nodes not in
    it are accepted from any start, as when resuming a walk). Raises
    :class:`MalformedEntry`; ``expected`` is not modified. This is the walk's hot path.
    """
    nfields = len(fields)
    if nfields % 2 or nfields < 4:
        raise MalformedEntry("data entry without node/payload pairs")
    items = []
    seen: dict[int, int] | None = None
    for k in range(2, nfields, 2):
        head, _, tail = fields[k].partition(b":")
        node = nodes.get(head)
        try:
            start = int(tail)
        except ValueError:
            raise MalformedEntry(f"bad field name {fields[k][:40]!r}") from None
        if node is None:
            if not head.isdigit():
                raise MalformedEntry(f"bad field name {fields[k][:40]!r}")
            raise MalformedEntry(f"data for undeclared node #{int(head)}")
        payload = fields[k + 1]
        size = node.frame_bytes
        if size:
            n, rest = divmod(len(payload), size)
            if rest or not n:
                raise MalformedEntry(f"{node.name}: payload of {len(payload)} bytes is not a "
                                     f"whole number of {size}-byte points")
            value: Any = payload
        else:  # lima: image references
            value, n = parse_runs(payload)
        idx = node.idx
        want = expected.get(idx) if seen is None or idx not in seen else seen[idx]
        if want is not None and start != want:
            raise MalformedEntry(f"{node.name}: block starts at {start}, expected {want}")
        if nfields > 4:
            if seen is None:
                seen = {}
            seen[idx] = start + n
        items.append((node, start, start + n, value))
    return items


class ScanDecoder:
    """Turns a scan's stream entries into events, in order, merging consecutive blocks.

    Consecutive blocks of one node read in the same batch become one NEW_DATA event
    (fewer, larger events); NEW_NODE and END_SCAN keep their place in the order.
    """

    def __init__(self, scan: ScanNode, key: bytes, resumed: bool = False):
        self.scan = scan
        self.key = key
        self.nodes: dict[bytes, Any] = {}  # b"<index>" -> node
        self.expected: dict[int, int] = {}
        self.ended = False
        self.resumed = resumed
        if resumed:
            # A resumed walk starts mid-stream: nodes were declared before the cursor.
            self.nodes.update(by_key(scan._nodes_by_index()))

    def decode(self, entries: list, cursor: str) -> list[tuple]:
        out: list[tuple] = []
        pending: dict[int, list] = {}

        def flush():
            for node, start, stop, parts in pending.values():
                if node.type == "lima":
                    refs = tuple(expand_runs(parts))
                    out.append((NEW_DATA, node, make_image_data(start, stop, refs, cursor)))
                else:
                    buf = parts[0] if len(parts) == 1 else b"".join(parts)
                    arr = np.frombuffer(buf, dtype=node.dtype)
                    if node.shape:
                        arr = arr.reshape(node.block_shape)
                    out.append((NEW_DATA, node, make_channel_data(start, stop, arr, cursor)))
            pending.clear()

        for entry_id, fields in entries:
            if self.ended:
                break
            try:
                if len(fields) < 2 or fields[0] != b"t":
                    raise MalformedEntry("no 't' (entry type) field first")
                kind = fields[1]
                if kind == b"data":
                    for node, start, stop, value in parse_data_fields(fields, self.nodes,
                                                                      self.expected):
                        self.expected[node.idx] = stop
                        p = pending.get(node.idx)
                        if p is not None:
                            if node.type == "lima":
                                p[3].extend(value)
                            else:
                                p[3].append(value)
                            p[2] = stop
                        else:
                            pending[node.idx] = [node, start, stop,
                                                 list(value) if node.type == "lima" else [value]]
                elif kind == b"node":
                    node = self._parse_node(fields)
                    flush()
                    out.append((NEW_NODE, node, NewNode(cursor)))
                elif kind == b"end":
                    end = parse_end(fields, cursor)
                    flush()
                    self.ended = True
                    out.append((END_SCAN, self.scan, end))
                else:
                    raise MalformedEntry(f"unknown entry type {kind[:20]!r}")
            except MalformedEntry as exc:
                log.warning("skipping malformed entry %s on %s: %s",
                            _s(entry_id), _s(self.key), exc)
        flush()
        return out

    def _parse_node(self, fields: list):
        try:
            d = {fields[k]: fields[k + 1] for k in range(2, len(fields) - 1, 2)}
            idx = int(d[b"i"])
            node = self.scan._node_from_declaration(idx, d[b"name"].decode(),
                                                    d[b"type"].decode(),
                                                    encoding.loads(d[b"info"]))
        except (KeyError, ValueError, TypeError, UnicodeDecodeError) as exc:
            raise MalformedEntry(f"bad node declaration: {exc!r}") from None
        self.nodes[str(idx).encode()] = node
        self.expected.setdefault(idx, 0)
        return node


def parse_end(fields: list, cursor: str = "") -> ScanEnd:
    try:
        d = {fields[k]: fields[k + 1] for k in range(0, len(fields) - 1, 2)}
        return end_from_fields(d.get(b"reason"), d.get(b"by"), d.get(b"time"),
                               d.get(b"counts"), d.get(b"info"), cursor)
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        raise MalformedEntry(f"bad end entry: {exc!r}") from None


def end_from_fields(reason, by, time_, counts, info, cursor: str = "") -> ScanEnd:
    return ScanEnd(
        reason=(reason or b"FAILURE").decode(),
        by=(by or b"producer").decode(),
        time=float(time_ or 0.0),
        counts={str(k): int(v) for k, v in json.loads(counts or b"{}").items()},
        info=dict(encoding.loads(info or b"{}")),
        cursor=cursor,
    )


def _s(value) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
