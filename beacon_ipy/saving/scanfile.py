"""One scan's HDF5 file: created as ``.part``, appended to, finalised, renamed. All blocking.

Every method blocks on the disk: call them through :mod:`.blocking` (the saver does).
The write protocol (docs/saving.md):

1. ``scanNNNN.h5.part`` is created from scratch (a stale one is deleted first: after a
   crash it may be unreadable, so it is never reused);
2. channel datasets (chunked, resizable) grow by index-addressed batches, so writing a
   batch twice (after a reconnection) gives the same file;
3. at the end: images as virtual datasets, NeXus structure, metadata; the file is
   closed, fsync'ed, then atomically renamed to ``scanNNNN.h5`` and the directory
   fsync'ed. A file without ``.part`` is therefore always complete.

On any error the file is abandoned (:meth:`ScanFile.abandon`): its descriptor is pointed
at /dev/null so HDF5 can close cleanly even on a full disk (otherwise HDF5 keeps the
file open, the space stays in use, and the process may crash at exit), and the
``.part`` is deleted. The data is still in Redis; the next attempt starts over.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import h5py
import numpy as np

import beacon_ipy
from beacon_ipy.saving import h5maps_layout, nexus
from beacon_ipy.saving.blocking import fsync_path
from beacon_ipy.saving.failpoints import failpoint
from beacon_ipy.saving.h5values import hdf5_name, set_nx_class, write_dict, write_value
from beacon_ipy.scans.events import ScanEnd
from beacon_ipy.scans.streams import StreamDescription

UID_ATTR = "beacon_ipy_scan_uid"
INCOMPLETE_ATTR = "beacon_ipy_incomplete"  # on an entry whose data lost points (trimmed)
LOST_ATTR = "lost_points"  # on a dataset: [[start, stop], ...] ranges filled, not data
LIBVER = ("v110", "v110")  # virtual datasets need 1.10; readable by any HDF5 >= 1.10
CHUNK_BYTES = 1 << 20
SMALL_CHUNK_BYTES = 64 << 10
SYNC_EVERY = 64 << 20  # bytes written between two fdatasync of a growing file


def chunk_rows(frame_bytes: int, npoints: int | None) -> int:
    """Rows per chunk: about 1 MiB, fewer for short scans (the last chunk is whole on disk)."""
    target = CHUNK_BYTES if (npoints or frame_bytes >= 64) else SMALL_CHUNK_BYTES
    rows = max(1, target // max(1, frame_bytes))
    if npoints:
        rows = min(rows, npoints)
    return rows


def iso_time(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).astimezone().isoformat()


def read_uid(path: Path) -> str | None:
    """The scan identity stored in a saved file (raises OSError if it cannot be opened)."""
    with h5py.File(path, "r") as fh:
        uid = fh.attrs.get(UID_ATTR)
    return uid.decode() if isinstance(uid, bytes) else uid


@dataclass
class Finalization:
    """Everything the end of a scan adds to its file.

    ``lost``: per stream, the index ranges that were trimmed from Redis before they were
    read; they hold the fill value (NaN for floats) and the entry is marked incomplete.
    """

    channels: Sequence[StreamDescription]
    lima_runs: Mapping[str, Sequence[tuple[int, str, str, int, int]]]  # pos, file, path, first, n
    lima_counts: Mapping[str, int]
    scan_info: Mapping[str, Any]
    end: ScanEnd
    notes: list[str] = field(default_factory=list)
    lost: Mapping[str, Sequence[tuple[int, int]]] = field(default_factory=dict)


class ScanFile:
    """The file of one scan while it is written."""

    def __init__(self, final_path: Path, *, scan_nb: int, entry_name: str, uid: str,
                 npoints: int | None = None, compression: str | None = None):
        self.final_path = Path(final_path)
        self.compression = compression  # h5py filter of streamed datasets (+ shuffle)
        self.part_path = self.final_path.with_name(self.final_path.name + ".part")
        self.scan_nb = scan_nb
        self.npoints = _positive_int(npoints)
        self.datasets: dict[str, h5py.Dataset] = {}
        self.bytes_written = 0
        self._unsynced = 0
        self.h5: h5py.File | None = None
        self.final_path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.part_path.unlink()  # a stale one from a crash: never trusted
        self.h5 = h5py.File(self.part_path, "w", libver=LIBVER, rdcc_nbytes=4 << 20,
                            rdcc_w0=1.0)
        try:
            self._start(uid, entry_name)
        except BaseException:
            self.abandon()
            raise

    def _start(self, uid: str, entry_name: str) -> None:
        """Root and entry skeleton. What scan_info says is written at the end, from the
        final scan_info, so that the file does not depend on when the saver joined."""
        failpoint("part_created", self.scan_nb)
        h5 = self.h5
        h5.attrs["NX_class"] = "NXroot"
        h5.attrs["creator"] = f"beacon-ipy {beacon_ipy.__version__}"
        h5.attrs["file_name"] = self.final_path.name
        h5.attrs[UID_ATTR] = uid
        h5.attrs["default"] = entry_name
        self.entry = h5.create_group(entry_name)
        self.entry.attrs["NX_class"] = "NXentry"
        self.measurement = self.entry.create_group("measurement", track_order=True)
        self.measurement.attrs["NX_class"] = "NXcollection"

    # -- during the scan --------------------------------------------------------------
    def apply(self, ops: Sequence[tuple]) -> dict[str, int]:
        """Apply ``("node", StreamDescription)`` and ``("data", name, start, array)``
        operations. Returns the number of points now in each touched dataset.
        """
        counts: dict[str, int] = {}
        before = self.bytes_written
        for op in ops:
            if op[0] == "node":
                self._create(op[1])
            else:
                _, name, start, data = op
                ds = self.datasets[name]
                stop = start + len(data)
                if len(ds) < stop:
                    ds.resize(stop, axis=0)
                ds[start:stop] = data
                self.bytes_written += data.nbytes
                counts[name] = len(ds)
        self._unsynced += self.bytes_written - before
        if self._unsynced >= SYNC_EVERY:
            # start writing back now rather than all at the end (the final fsync then
            # has little left to do); this thread waits, the hub does not
            self.h5.flush()
            os.fdatasync(self.h5.id.get_vfd_handle())
            self._unsynced = 0
        failpoint("data_written", self.scan_nb)
        return counts

    def _create(self, ch: StreamDescription) -> None:
        if ch.name in self.datasets or ch.is_image:
            return
        frame_bytes = ch.dtype.itemsize * int(np.prod(ch.shape, dtype=np.int64))
        rows = chunk_rows(frame_bytes, self.npoints)
        name = hdf5_name(ch.name)
        ds = self.measurement.create_dataset(
            name, shape=(0, *ch.shape), maxshape=(None, *ch.shape), dtype=ch.dtype,
            chunks=(rows, *ch.shape), fillvalue=_fill_value(ch.dtype),
            compression=self.compression, shuffle=self.compression is not None)
        if ch.unit:
            ds.attrs["units"] = ch.unit
        if ch.ndim == 1:
            ds.attrs["interpretation"] = "spectrum"
        elif ch.ndim == 2:
            ds.attrs["interpretation"] = "image"
        self.datasets[ch.name] = ds

    # -- at the end -------------------------------------------------------------------
    def finalize(self, fin: Finalization) -> None:
        """Images, NeXus structure and metadata; then close, sync and rename the file."""
        failpoint("before_finalize", self.scan_nb)
        entry = self.entry
        info = fin.scan_info
        start = info.get("start_timestamp")
        self.h5.attrs["file_time"] = (iso_time(float(start)) if isinstance(start, int | float)
                                      else _start_time(info))
        tree = h5maps_layout.follow(info, entry.name[1:], fin.notes)
        if tree is not None:  # the scan's own layout (BLISS's writer's): docs/saving.md
            h5maps_layout.write_scan(self.h5, entry, self.datasets, fin, tree, entry.name[1:])
            self.commit()
            return
        entry["title"] = str(info.get("title", ""))
        entry["start_time"] = _start_time(info)
        for ch in fin.channels:
            self._create(ch)  # a channel that never got a point still gets its dataset
        names = nexus.nexus_names(fin.channels)
        instrument = entry.create_group("instrument")
        instrument.attrs["NX_class"] = "NXinstrument"
        by_name: dict[str, h5py.Dataset] = {}
        for ch in fin.channels:
            nn = names[ch.name]
            group = instrument.create_group(nn.group)
            group.attrs["NX_class"] = nn.nx_class
            target = f"{group.name}/{nn.field}"
            if ch.is_image:
                ds = self._images(group, nn.field, ch, fin.lima_runs.get(ch.name, ()),
                                  fin.lima_counts.get(ch.name, 0))
            else:
                ds = self.datasets[ch.name]
                lost = fin.lost.get(ch.name)
                if lost:
                    if len(ds) < max(stop for _, stop in lost):
                        ds.resize(max(stop for _, stop in lost), axis=0)
                    ds.attrs[LOST_ATTR] = np.array(lost, dtype=np.int64)
                self.h5.move(ds.name, target)
                ds = self.h5[target]
            ds.attrs["long_name"] = ch.name
            if ch.unit:
                ds.attrs["units"] = ch.unit
            for key, value in ch.info.items():
                if key not in STREAM_INFO_KEYS:
                    write_value(group, key, value)
            by_name[ch.name] = ds
        for ch in fin.channels:  # measurement: links in declaration order
            self.measurement[names[ch.name].group] = by_name[ch.name]
        positioners = info.get("positioners") if isinstance(info.get("positioners"),
                                                            Mapping) else {}
        units = positioners.get("positioners_units", {})
        nexus.write_positioners(instrument, "positioners_start",
                                positioners.get("positioners_start"), units)
        end_positions = fin.end.info.get("positioners_end")
        if end_positions is None:
            end_positions = positioners.get("positioners_end")
        nexus.write_positioners(instrument, "positioners_end", end_positions, units)
        metadata = info.get("instrument")
        if isinstance(metadata, Mapping):
            nexus.merge_metadata(instrument, metadata)
        specs, notes = nexus.plot_specs(info, fin.channels)
        short = {ch.name: names[ch.name].group for ch in fin.channels}
        default = None
        for spec in specs:
            made = nexus.write_nxdata(entry, spec, by_name, short)
            if made and default is None:
                default = made
        end_time = fin.end.info.get("end_time") or info.get("end_time")
        entry["end_time"] = str(end_time) if isinstance(end_time, str) else iso_time(
            fin.end.time)
        entry["end_reason"] = str(fin.end.reason)
        write_dict(entry.create_group("scan_info"), info)
        end_info = {"reason": str(fin.end.reason), "by": fin.end.by,
                    "counts": dict(fin.end.counts)}
        if fin.end.detail:
            end_info["detail"] = fin.end.detail
        write_dict(entry.create_group("scan_end_info"), end_info)
        all_notes = list(fin.notes) + notes
        if all_notes:
            entry["saving_notes"] = nexus.string_list(all_notes)
        if fin.lost:
            entry.attrs[INCOMPLETE_ATTR] = True
        nexus.set_default_chain(self.h5, entry, default)
        set_nx_class(self.measurement, "NXcollection")
        self.commit()

    def _images(self, group: h5py.Group, name: str, ch: StreamDescription,
                runs: Sequence[tuple[int, str, str, int, int]], count: int) -> h5py.Dataset:
        """The image stack as a virtual dataset over the detector's own files."""
        if count == 0:
            ds = group.create_dataset(name, shape=(0, *ch.shape), dtype=ch.dtype)
            ds.attrs["interpretation"] = "image"
            return ds
        ds = h5maps_layout.image_vds(group, name, ch, count, runs, fillvalue=0)
        ds.attrs["interpretation"] = "image"
        if ch.unit:
            ds.attrs["units"] = ch.unit
        return ds

    def commit(self) -> None:
        """Close, fsync, rename ``.part`` -> final, fsync the directory."""
        if self.h5 is not None:
            # flush first: a write error (disk full) must happen here, where abandon()
            # can still release the file; HDF5 does not survive a close that fails
            self.h5.flush()  # on failure self.h5 stays set: abandon() releases it
            self.h5.close()
            self.h5 = None
        fsync_path(self.part_path)
        failpoint("before_rename", self.scan_nb)
        os.replace(self.part_path, self.final_path)
        fsync_path(self.final_path.parent, directory=True)
        failpoint("after_rename", self.scan_nb)

    def close(self) -> None:
        """Close the ``.part`` file as it is (a clean stop; the next saver starts over)."""
        h5, self.h5 = self.h5, None
        if h5 is not None:
            try:
                h5.flush()
            except Exception:  # noqa: BLE001 - the .part is rewritten anyway
                _abandon_h5(h5)
            else:
                h5.close()

    def abandon(self) -> None:
        """After an error: release the file whatever state HDF5 is in, delete the ``.part``."""
        h5, self.h5 = self.h5, None
        with _file_size_unlimited():
            if h5 is not None:
                _redirect(h5)
            # drop every object of the file while writes still go somewhere harmless
            self.datasets.clear()
            self.entry = self.measurement = None
            if h5 is not None:
                with contextlib.suppress(Exception):
                    h5.close()
        with contextlib.suppress(OSError):
            self.part_path.unlink()


def _redirect(h5: h5py.File) -> None:
    """Point ``h5``'s descriptor at an anonymous in-memory file.

    Once a write failed (disk full), HDF5 can neither write nor close the file; with
    its descriptor replaced, the writes it still does at close succeed and go nowhere,
    so it closes cleanly (a close that fails leaves HDF5 in a state that crashes the
    process later). The sink must accept writes and the ftruncate HDF5 does at close,
    which /dev/null refuses. The real file's space is freed once it is unlinked.
    """
    with contextlib.suppress(Exception):
        if not h5.id.valid:
            return
        fd = h5.id.get_vfd_handle()
        if not isinstance(fd, int) or fd < 0:
            return
        try:
            sink = os.memfd_create("beacon-ipy-abandoned-hdf5")
        except (AttributeError, OSError):
            sink = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(sink, fd)
        finally:
            os.close(sink)


def _abandon_h5(h5: h5py.File) -> None:
    """Close ``h5`` whatever happened to its disk (see :func:`_redirect`)."""
    with _file_size_unlimited():
        _redirect(h5)
        with contextlib.suppress(Exception):
            h5.close()


@contextlib.contextmanager
def _file_size_unlimited():
    """Raise the soft RLIMIT_FSIZE to the hard one for a moment (EFBIG on the sink)."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
    except (ImportError, OSError, ValueError):
        yield
        return
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


STREAM_INFO_KEYS = frozenset({"dtype", "shape", "unit", "plugin", "format", "lima_info",
                              "encoding", "display_name"})
"""Keys of a stream's own info that describe the stream (not written as metadata)."""


def _fill_value(dtype: np.dtype) -> Any:
    """What a point never read holds: NaN for floats, 0 otherwise (the HDF5 default)."""
    return np.nan if np.dtype(dtype).kind in "fc" else None


def _positive_int(value: Any) -> int | None:
    try:
        n = int(value)
    except (TypeError, ValueError):
        return None
    return n if n > 0 else None


def _start_time(scan_info: Mapping[str, Any]) -> str:
    start = scan_info.get("start_time")
    if isinstance(start, str):
        return start
    ts = scan_info.get("start_timestamp")
    return iso_time(float(ts)) if isinstance(ts, int | float) else ""
