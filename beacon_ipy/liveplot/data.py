"""What a live plot keeps of a scan: bounded numpy buffers filled cheaply on NEW_DATA.

Why a module of its own: ingestion runs for every event (up to thousands a second) and
must stay cheap and bounded, while drawing happens a few times a second from a snapshot
(:mod:`.frame`). Nothing here imports matplotlib or IPython.

Memory bounds:

* 0d channels (:class:`PointColumns`): every point up to ``max_points`` per channel;
  beyond that the scan's channels keep every 2nd point, then every 4th... (the stride
  doubles each time the buffers fill), so memory stays below
  ``max_points * 8 bytes`` per channel whatever the scan length.
* 1d channels (:class:`SpectrumHistory`): the latest spectrum at full resolution, and a
  waterfall of at most ``max_rows`` rows (same stride doubling over points) of at most
  ``max_cols`` columns (adjacent bins averaged).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from beacon_ipy.scans.streams import StreamDescription, StreamKind

#: Default bounds (see the module docstring).
MAX_POINTS = 100_000
MAX_ROWS = 128
MAX_COLS = 512


def _kept(start: int, n: int, stride: int) -> tuple[int, int]:
    """Of points ``start..start+n``, the offset of the first multiple of ``stride`` and
    its slot (point // stride)."""
    first = (-start) % stride
    return first, (start + first) // stride


class PointColumns:
    """The 0d channels of one scan, decimated together so that slot ``k`` of every
    channel is point ``k * stride``.

    A shared stride keeps channels aligned (x and y of a curve) even when they fill at
    different moments.
    """

    def __init__(self, max_points: int = MAX_POINTS):
        if max_points < 2:
            raise ValueError(f"max_points must be >= 2, not {max_points!r}")
        self.max_slots = int(max_points)
        self.stride = 1
        self._bufs: dict[str, np.ndarray] = {}
        self._slots: dict[str, int] = {}  # filled slots per channel
        self._points: dict[str, int] = {}  # points received per channel (next index)

    def add(self, name: str) -> None:
        if name not in self._bufs:
            self._bufs[name] = np.empty(min(1024, self.max_slots))
            self._slots[name] = 0
            self._points[name] = 0

    def __contains__(self, name: str) -> bool:
        return name in self._bufs

    @property
    def names(self) -> list[str]:
        return list(self._bufs)

    def points(self, name: str) -> int:
        """Points received for ``name`` (index of the next expected point)."""
        return self._points.get(name, 0)

    def put(self, name: str, start: int, values: np.ndarray) -> None:
        """Store points ``start..`` of ``name``, by index: a block may come twice (two
        walks of one scan) or late (it then fills the hole it left, NaN meanwhile)."""
        self.add(name)
        values = np.asarray(values).reshape(-1)
        if not len(values):
            return
        while -(-(start + len(values)) // self.stride) > self.max_slots:
            self._compact()
        first, slot = _kept(start, len(values), self.stride)
        kept = values[first::self.stride]
        end = slot + len(kept)
        filled = self._slots[name]
        buf = self._bufs[name]
        if end > len(buf):
            new = np.empty(min(self.max_slots, max(end, 2 * len(buf))))
            new[:filled] = buf[:filled]
            buf = self._bufs[name] = new
        if slot > filled:
            buf[filled:slot] = np.nan
        buf[slot:end] = kept
        self._slots[name] = max(filled, end)
        self._points[name] = max(self._points[name], start + len(values))

    def _compact(self) -> None:
        """Keep every other slot of every channel; the stride doubles."""
        for name, buf in self._bufs.items():
            n = self._slots[name]
            kept = buf[0:n:2].copy()
            buf[:len(kept)] = kept
            self._slots[name] = len(kept)
        self.stride *= 2

    def series(self, names: list[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Aligned copies over the points all ``names`` have: ``(point_indices, {name: y})``."""
        n = min((self._slots.get(name, 0) for name in names), default=0)
        return (np.arange(n) * self.stride,
                {name: self._bufs[name][:n].copy() for name in names})

    def last(self, name: str) -> float | None:
        n = self._slots.get(name, 0)
        return float(self._bufs[name][n - 1]) if n else None

    def nbytes(self) -> int:
        return sum(buf.nbytes for buf in self._bufs.values())


class SpectrumHistory:
    """A 1d channel: its latest spectrum, and a bounded waterfall (rows = points)."""

    def __init__(self, nbins: int, max_rows: int = MAX_ROWS, max_cols: int = MAX_COLS):
        if max_rows < 2 or max_cols < 1:
            raise ValueError("waterfall bounds: need max_rows >= 2 and max_cols >= 1")
        self.nbins = int(nbins)
        self.factor = max(1, math.ceil(self.nbins / max_cols))
        self._edges = np.arange(0, self.nbins, self.factor)
        self._widths = np.diff(np.append(self._edges, self.nbins)).astype(np.float32)
        self.rows = np.full((int(max_rows), len(self._edges)), np.nan, dtype=np.float32)
        self.stride = 1
        self.filled = 0  # waterfall rows in use; row k is point k * stride
        self.points = 0  # spectra received (index of the next expected one)
        self.latest: np.ndarray | None = None
        self.latest_index = -1

    def put(self, start: int, block: np.ndarray) -> None:
        """Store spectra ``start..`` (a block of shape ``(n, nbins)``), by index like
        :meth:`PointColumns.put`."""
        block = np.asarray(block).reshape(-1, self.nbins)
        if not len(block):
            return
        stop = start + len(block)
        if stop - 1 >= self.latest_index:
            self.latest = block[-1].astype(np.float32, copy=True)
            self.latest_index = stop - 1
        max_rows = len(self.rows)
        while -(-stop // self.stride) > max_rows:
            half = self.rows[0:self.filled:2].copy()
            self.rows[:] = np.nan
            self.rows[:len(half)] = half
            self.filled = len(half)
            self.stride *= 2
        first, slot = _kept(start, len(block), self.stride)
        kept = block[first::self.stride]
        end = slot + len(kept)
        if len(kept):  # rows never written stay NaN (holes)
            if self.factor == 1:
                self.rows[slot:end] = kept
            else:
                sums = np.add.reduceat(kept.astype(np.float32, copy=False), self._edges, axis=1)
                self.rows[slot:end] = sums / self._widths
            self.filled = max(self.filled, end)
        self.points = max(self.points, stop)

    def waterfall(self) -> tuple[np.ndarray, int]:
        """A copy of the rows in use and the stride (row k is point k * stride)."""
        return self.rows[:self.filled].copy(), self.stride

    def nbytes(self) -> int:
        return self.rows.nbytes + (self.latest.nbytes if self.latest is not None else 0)


def channel_label(stream: StreamDescription, with_unit: bool = True) -> str:
    """A stream's axis label: its display name, and its unit in parentheses."""
    name = stream.display_name
    return f"{name} ({stream.unit})" if with_unit and stream.unit else name


class ImageStream:
    """A 2D detector of a scan: the reference of its newest frame (file, path, index)."""

    def __init__(self, meta: StreamDescription):
        self.meta = meta
        self.points = 0  # references received (index of the next expected one)
        self.latest: Any = None  # the newest frame's reference
        self.latest_index = -1

    def put(self, start: int, refs: list[Any]) -> None:
        if refs and start + len(refs) - 1 > self.latest_index:
            self.latest, self.latest_index = refs[-1], start + len(refs) - 1
        self.points = max(self.points, start + len(refs))


def display_name(name: str, scan_info: dict[str, Any]) -> str:
    """Short name of a channel: scan_info's ``display_name``, else the part after ``:``."""
    described = (scan_info.get("channels") or {}).get(name) or {}
    return str(described.get("display_name") or name.split(":")[-1])


def master_axes(scan_info: dict[str, Any]) -> list[str]:
    """The scan's master channels (the first is the x axis; fast axis first for meshes)."""
    masters: list[str] = []
    chain = scan_info.get("acquisition_chain") or {}
    for top in chain.values() if isinstance(chain, dict) else ():
        master = (top or {}).get("master") or {}
        for name in master.get("scalars") or ():
            if name not in masters:
                masters.append(name)
    return masters


def mesh_shape(scan_info: dict[str, Any]) -> tuple[int, int] | None:
    """``(slow, fast)`` point counts of a 2D mesh scan, or None if it is not one."""
    if scan_info.get("data_dim") != 2 and "mesh" not in str(scan_info.get("type", "")):
        return None
    n1, n2 = scan_info.get("npoints1"), scan_info.get("npoints2")
    if n1 is None or n2 is None:
        shape = scan_info.get("shape")
        if shape is None or len(shape) != 2:
            return None
        n2, n1 = shape
    try:
        n1, n2 = int(n1), int(n2)
    except (TypeError, ValueError):
        return None
    return (n2, n1) if n1 > 0 and n2 > 0 else None


class ScanModel:
    """One scan as the plot sees it: its scan_info digest and bounded data buffers."""

    def __init__(self, scan_nb: int, scan_info: dict[str, Any], *,
                 max_points: int = MAX_POINTS, max_rows: int = MAX_ROWS,
                 max_cols: int = MAX_COLS):
        self.scan_nb = int(scan_nb)
        self.update_info(scan_info)
        self.channels: dict[str, StreamDescription] = {}
        self.columns = PointColumns(max_points)
        self.spectra: dict[str, SpectrumHistory] = {}
        self.images: dict[str, ImageStream] = {}  # 2D detectors (frames in files)
        self._max_rows, self._max_cols = max_rows, max_cols
        self.end_reason: str | None = None
        self.events = 0
        self.lost: list[str] = []  # points trimmed from Redis before they were read
        self.announced = False  # seen announced by the session runner (not only replayed)

    def update_info(self, scan_info: dict[str, Any]) -> None:
        """Digest ``scan_info`` (again: a producer completes it when the scan starts)."""
        self.info = scan_info
        self.title = str(scan_info.get("title") or scan_info.get("type") or "scan")
        self.type = str(scan_info.get("type") or "scan")
        try:
            self.npoints = int(scan_info.get("npoints") or 0)
        except (TypeError, ValueError):
            self.npoints = 0
        self.chain_masters = master_axes(scan_info)
        self.mesh = mesh_shape(scan_info)
        self.backnforth = bool(scan_info.get("backnforth"))
        self.hints = [p for p in scan_info.get("plots") or () if isinstance(p, dict)]

    # -- ingestion (cheap: called for every event) ------------------------------------
    def add_stream(self, stream: StreamDescription) -> None:
        """A stream of the scan: 0d and 1d into buffers, images as detectors."""
        if stream.is_image:
            if stream.name not in self.images:
                self.images[stream.name] = ImageStream(stream)
            return
        if stream.name in self.channels or stream.ndim > 1:
            return
        self.channels[stream.name] = stream
        if stream.ndim == 0:
            self.columns.add(stream.name)
        else:
            self.spectra[stream.name] = SpectrumHistory(stream.shape[0], self._max_rows,
                                                        self._max_cols)

    def add_channel(self, name: str, shape: tuple[int, ...], unit: str = "",
                    info: dict[str, Any] | None = None) -> None:
        """A 0d (``shape == ()``) or 1d channel given by its parts (tests, tools)."""
        if len(shape) > 1:
            return
        kind = StreamKind.SCALAR if not shape else StreamKind.SPECTRUM
        self.add_stream(StreamDescription(name, kind, np.dtype("float64"), tuple(shape),
                                          unit, display_name(name, self.info),
                                          info=dict(info or {})))

    def add_image(self, name: str, shape: tuple[int, ...], unit: str = "",
                  info: dict[str, Any] | None = None) -> None:
        """A 2D detector given by its parts (its frames stay in files)."""
        self.add_stream(StreamDescription(name, StreamKind.IMAGE, np.dtype("uint16"),
                                          tuple(shape), unit, display_name(name, self.info),
                                          info=dict(info or {})))

    def add_data(self, name: str, start: int, data: np.ndarray) -> None:
        meta = self.channels.get(name)
        if meta is None:
            return
        self.events += 1
        if meta.ndim == 0:
            self.columns.put(name, start, data)
        else:
            self.spectra[name].put(start, data)

    def add_image_refs(self, name: str, start: int, refs: Any) -> None:
        """References ``start..`` of a 2D detector: only the newest is kept."""
        stream = self.images.get(name)
        if stream is not None:
            self.events += 1
            stream.put(start, list(refs))

    def end(self, reason: str) -> None:
        self.end_reason = str(reason)

    # -- what to show -----------------------------------------------------------------
    @property
    def ended(self) -> bool:
        return self.end_reason is not None

    @property
    def points(self) -> int:
        """Points received so far (the most advanced channel)."""
        counts = [self.columns.points(n) for n in self.columns.names]
        counts += [s.points for s in self.spectra.values()]
        return max(counts, default=0)

    @property
    def masters(self) -> list[str]:
        """The scan's master axes. A scan whose only 0d channels are masters that are no
        motors (a lone counter its producer made the master) has none: its counters are
        plotted against the point index."""
        names = self.columns.names
        if names and all(n in self.chain_masters and not n.startswith("axis:")
                         for n in names):
            return []
        return self.chain_masters

    def x_axis(self) -> str | None:
        """The 0d channel to plot counters against: the first master that is a channel."""
        for name in self.masters:
            if name in self.columns:
                return name
        for hint in self.hints:
            for name in hint.get("axes") or ():
                if name in self.columns:
                    return name
        return None

    def default_counters(self) -> list[str]:
        """The plot hints' default signal; without hints, every 0d channel except the
        masters and timers (epoch / elapsed time)."""
        for hint in self.hints:
            signal = hint.get("signal")
            if signal in self.columns:
                return [signal]
        masters = set(self.masters)
        if self.chain_masters and not masters:
            return self.columns.names[:1]
        return [n for n in self.columns.names if n not in masters
                and not n.endswith(("epoch", "elapsed_time"))]

    def resolve(self, wanted: list[str] | None, dim: int = 0) -> tuple[list[str], list[str]]:
        """Channels of dimension ``dim`` matching ``wanted`` (full or short names), and the
        requested names that matched nothing."""
        if wanted is None:
            if dim == 0:
                return self.default_counters(), []
            return [n for n, m in self.channels.items() if m.ndim == dim][:1], []
        found, missing = [], []
        for want in wanted:
            hits = [n for n, m in self.channels.items()
                    if m.ndim == dim and want in (n, m.display_name, n.split(":")[-1])]
            if hits:
                found.extend(h for h in hits if h not in found)
            else:
                missing.append(want)
        return found, missing

    def nbytes(self) -> int:
        return self.columns.nbytes() + sum(s.nbytes() for s in self.spectra.values())
