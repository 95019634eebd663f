"""ScanHandle: what consumers (and the seed's nodes) see of one blissdata scan.

A read-only view over a ``blissdata.Scan`` plus beacon-ipy's descriptions of its
streams; the runner keeps it up to date (state, info, end). Its attributes are listed
in :mod:`beacon_ipy.scans.consumer`.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from beacon_ipy.scans.errors import ScanDataTrimmedError, ScanExpiredError
from beacon_ipy.scans.events import ImageRef, ScanEnd
from beacon_ipy.scans.streams import StreamDescription


class ScanHandle:
    """One scan: identity, scan_info, state, stream descriptions, point access."""

    def __init__(self, store: Any, scan: Any):
        self._store = store
        self._scan = scan
        self.key: str = scan.key
        self.end: ScanEnd | None = None
        self._streams: dict[str, StreamDescription] = {}

    # -- identity --------------------------------------------------------------------
    @property
    def identity(self) -> dict[str, Any]:
        return self._scan._model.id.model_dump(exclude={"pk"})

    @property
    def session(self) -> str:
        return str(self._scan.session or "")

    @property
    def number(self) -> int:
        return int(self._scan.number)

    scan_nb = number

    @property
    def name(self) -> str:
        """Identity name (BLISS: the scan type, e.g. ``"ascan"``)."""
        return str(self._scan.name)

    @property
    def node_name(self) -> str:
        return f"{self.number}_{self.name}"

    @property
    def path(self) -> str | None:
        return self._scan.path

    @property
    def info(self) -> dict[str, Any]:
        return self._scan.info

    @property
    def state(self):
        """blissdata's ``ScanState`` as last read by the runner (or :meth:`update`)."""
        return self._scan.state

    @property
    def blissdata_scan(self) -> Any:
        """The underlying read-only ``blissdata.Scan``."""
        return self._scan

    def replace_scan(self, scan: Any) -> None:
        """Point at a reloaded ``blissdata.Scan`` of the same key (runner use)."""
        self._scan = scan

    # -- streams ---------------------------------------------------------------------
    @property
    def streams(self) -> dict[str, StreamDescription]:
        """Descriptions of the streams known so far, in declaration order."""
        for name, stream in self._scan.streams.items():
            if name not in self._streams:
                self._streams[name] = StreamDescription.from_blissdata(stream, self.info)
        return dict(self._streams)

    def stream_names(self) -> list[str]:
        """Names in declaration order (blissdata's model order)."""
        order = list(self._scan._model.data_streams)
        known = self.streams
        return [n for n in order if n in known]

    def _bd_stream(self, name: str):
        streams = self._scan.streams
        if name not in streams:
            raise KeyError(f"scan {self.describe()} has no stream {name!r}; it has "
                           f"{sorted(streams)}")
        return streams[name]

    def count(self, name: str) -> int:
        """Number of points (images) of stream ``name`` published so far."""
        try:
            return len(self._bd_stream(name))
        except Exception as exc:  # noqa: BLE001 - blissdata raises various on a gone key
            self._raise_if_gone(exc)
            raise

    def get(self, name: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Points ``start`` to ``stop`` (exclusive, slice rules over what has arrived) of
        a 0d/1d stream, shape ``(n, *shape)``. Trimmed points raise
        :class:`ScanDataTrimmedError`."""
        from blissdata.exceptions import IndexNoMoreThereError

        desc = self.streams.get(name) or StreamDescription.from_blissdata(
            self._bd_stream(name), self.info)
        if desc.is_image:
            raise TypeError(f"{name!r} is an image stream: use references() or get_image()")
        stream = self._bd_stream(name)
        n = len(stream)
        start, stop, _ = slice(start, stop).indices(n)
        if stop <= start:
            return np.empty((0, *desc.shape), dtype=desc.dtype)
        try:
            data = stream[start:stop]
        except IndexNoMoreThereError:
            raise ScanDataTrimmedError(self.describe(), name, start, stop) from None
        return np.asarray(data).reshape((-1, *desc.shape))

    def references(self, name: str, start: int = 0, stop: int | None = None
                   ) -> list[ImageRef]:
        """``(file, dataset path, frame index)`` of images ``start..stop`` (exclusive)."""
        desc = self.streams.get(name)
        if desc is None or not desc.is_image:
            raise TypeError(f"{name!r} is not an image stream of scan {self.describe()}")
        if desc.files is None:
            raise ValueError(f"image stream {name!r} of scan {self.describe()} is not saved "
                             f"to files: its frames can only be read from the detector")
        from beacon_ipy.scans import bdgaps

        n = self.count(name)
        start, stop, _ = slice(start, stop).indices(n)
        if stop <= start:
            return []
        return bdgaps.image_references(self._bd_stream(name), start, stop)

    def get_image(self, name: str, index: int) -> np.ndarray:
        """Frame ``index`` (negative from the end) of an image stream, from its file."""
        n = self.count(name)
        i = index + n if index < 0 else index
        if not 0 <= i < n:
            raise IndexError(f"{name}: image {index} not published (have {n})")
        return read_frame(self.references(name, i, i + 1)[0])

    # -- misc ------------------------------------------------------------------------
    def update(self) -> bool:
        """Re-read the state now (non-blocking); True if it changed."""
        from blissdata.exceptions import ScanNotFoundError

        from beacon_ipy.scans import bdgaps

        try:
            scan, changed = bdgaps.refresh(self._store, self._scan)
        except ScanNotFoundError as exc:
            raise ScanExpiredError(self.session, self.number, str(exc)) from None
        self._scan = scan
        return changed

    def exists(self) -> bool:
        return bool(self._store._redis.exists(self.key))

    def _raise_if_gone(self, exc: Exception) -> None:
        if not self.exists():
            raise ScanExpiredError(self.session, self.number, str(exc)) from exc

    def describe(self) -> str:
        return f"{self.session!r} #{self.number} ({self.key})"

    def __repr__(self) -> str:
        return f"<ScanHandle {self.describe()} {self.state.name}>"


def read_frame(ref: ImageRef) -> np.ndarray:
    """Read one frame from a detector HDF5 file (SWMR if the writer still has it open)."""
    import h5py

    if not os.path.exists(ref.file):
        raise FileNotFoundError(f"detector file {ref.file} not found (moved, deleted, or "
                                f"written on another machine)")
    fh = None
    errors = []
    for kwargs in ({"swmr": True}, {}, {"locking": False}):
        try:
            fh = h5py.File(ref.file, "r", **kwargs)
            break
        except (OSError, ValueError) as exc:
            errors.append(str(exc))
    if fh is None:
        raise OSError(f"cannot open detector file {ref.file}: {'; '.join(errors)}")
    with fh:
        dset = fh[ref.path]
        if fh.swmr_mode and fh.mode == "r":
            dset.refresh()
        if ref.index >= len(dset):
            raise IndexError(f"{ref.file}:{ref.path} has {len(dset)} frames, not {ref.index + 1}")
        return dset[ref.index]
