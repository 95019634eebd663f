"""A scan's ``h5maps`` (the layout BLISS's writer saves) as the layout of its saved entry.

BLISS's scans (when BLISS saving is on) and beacon-ipy's demo publish, in
``scan_info["h5maps"]``, ``{file path: root Group}`` trees of ``blissdata.h5map`` models:
groups, datasets (literal values, or ``{"type": "stream", "stream": name}`` for streamed
data), soft and external links, external-binary and virtual datasets, all with their
attributes. ``blisswriter run URL`` writes exactly that tree. When a scan carries one,
the saver follows it (docs/saving.md, "Following h5maps") so that each entry holds the
same groups, datasets (values, dtype, shape), links and attributes as blisswriter's file:

- literal datasets and attributes are written the way blisswriter 3.0 writes them
  (``create_dataset(data=item.decode())``, ``attrs[k] = item.decode()``): same dtypes;
- a streamed dataset is the saver's own dataset (already on disk, index-addressed, so
  crash-safe and restartable) moved to the mapped path; a stream mapped twice is hard
  linked; a stream with no point gets no dataset (as blisswriter), nor its attributes;
- an image stream is a virtual dataset over the detector's files (absolute paths: the
  saved file does not live next to them);
- ``virtual_dataset`` items are written (blisswriter 3.0.0 prints "VDS no supported yet").

Only the data file is followed: the map whose tree holds the scan's entry ``"<nb>.1"``
(other maps, e.g. master files holding external links, are the saver's session master
file's role). Without such a map, the saver derives the layout from scan_info.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import h5py
import numpy as np

from beacon_ipy.scans.streams import StreamDescription

LOST_ATTR = "lost_points"  # = scanfile.LOST_ATTR (a dataset's trimmed ranges)
STAGING = "/.beacon_ipy_staging"  # where streamed datasets wait while the tree is built


class H5mapsError(ValueError):
    """The scan's h5maps cannot be followed (invalid tree, missing entry)."""


def entry_tree(scan_info: Mapping[str, Any], entry_name: str) -> Any | None:
    """The validated root ``Group`` of the map holding ``entry_name``; None without h5maps.

    Raises :class:`H5mapsError` if h5maps exist but none holds the entry or one is invalid.
    """
    maps = scan_info.get("h5maps")
    if not isinstance(maps, Mapping) or not maps:
        return None
    from blissdata.h5map import Group, HDF5Item

    for file_path, raw in maps.items():
        try:
            root = HDF5Item.validate_python(raw)
        except Exception as exc:  # noqa: BLE001 - pydantic's ValidationError and others
            raise H5mapsError(f"h5maps[{file_path!r}] is not a valid blissdata h5map tree: "
                              f"{exc}") from exc
        if isinstance(root, Group) and entry_name in root.children:
            return root
    raise H5mapsError(f"no file of the scan's h5maps ({', '.join(map(str, maps))}) holds "
                      f"entry {entry_name!r}")


def follow(scan_info: Mapping[str, Any], entry_name: str, notes: list[str]) -> Any | None:
    """The tree to follow for ``entry_name``, or None: no h5maps, or h5maps that cannot be
    followed (then a note says why and the scan_info layout is used)."""
    try:
        tree = entry_tree(scan_info, entry_name)
        if tree is not None:
            dry_run(tree)
        return tree
    except H5mapsError as exc:
        notes.append(f"{exc}; the layout is derived from scan_info instead")
        return None


def dry_run(root: Any) -> None:
    """Write the tree's literal items into a throw-away in-memory file; raise
    :class:`H5mapsError` if HDF5 refuses one (an empty link target, a name used twice...),
    so that such a map falls back to the scan_info layout instead of failing (and being
    retried) at the end of the scan, on the real file."""
    h5 = h5py.File(f"beacon-ipy-h5maps-dry-run-{id(root)}", "w", driver="core",
                   backing_store=False)
    try:
        TreeWriter(h5, (), {}, {}).write(root)
    except Exception as exc:  # noqa: BLE001 - HDF5 and h5py raise many kinds
        raise H5mapsError(f"the scan's h5maps cannot be written as HDF5 ({exc})") from exc
    finally:
        h5.close()


def stream_paths(item: Any, path: str = "") -> dict[str, str]:
    """``{absolute HDF5 path: stream name}`` of every streamed dataset of a tree."""
    from blissdata.h5map import Dataset, Group, Stream

    if isinstance(item, Dataset) and isinstance(item.value, Stream):
        return {path or "/": item.value.stream}
    out: dict[str, str] = {}
    if isinstance(item, Group):
        for name, child in item.children.items():
            out.update(stream_paths(child, f"{path}/{name}"))
    return out


class TreeWriter:
    """Writes one h5map tree into an open file whose streamed data is already on disk.

    ``streamed``: stream name -> the saver's dataset holding its points (non-image);
    ``images``: stream name -> ``(count, runs)`` with runs ``(pos, file, path, first, n)``.
    ``notes`` collects what could not be followed (written as the entry's saving notes).
    """

    def __init__(self, h5: h5py.File, channels: Sequence[StreamDescription],
                 streamed: Mapping[str, h5py.Dataset],
                 images: Mapping[str, tuple[int, Sequence[tuple]]]):
        self.h5 = h5
        self.channels = {ch.name: ch for ch in channels}
        self.streamed = dict(streamed)
        self.images = images
        self.placed: dict[str, str] = {}  # stream name -> first path written
        self.notes: list[str] = []

    def stage(self, skeleton: str) -> None:
        """Move the streamed datasets aside (by explicit paths), drop the saver's skeleton."""
        staging = self.h5.require_group(STAGING)
        staged = {}
        for k, (stream, ds) in enumerate(self.streamed.items()):
            self.h5.move(ds.name, f"{STAGING}/{k}")
            staged[stream] = staging[str(k)]
        self.streamed = staged
        del self.h5[skeleton]

    def write(self, root: Any) -> None:
        """The whole tree: root attributes, then every child; then drop the staging."""
        _attributes(self.h5, root)
        for name, child in root.children.items():
            self.item(self.h5, name, child)
        unmapped = sorted(n for n in self.channels if n not in self.placed
                          and self._has_points(n))
        if unmapped:
            self.notes.append(f"streams not in the scan's h5maps are not saved (as BLISS's "
                              f"writer): {', '.join(unmapped)}")
        if STAGING in self.h5:
            del self.h5[STAGING]

    def item(self, parent: h5py.Group, name: str, item: Any) -> None:
        from blissdata.h5map import (
            Dataset,
            ExternalBinaryDataset,
            ExternalLink,
            Group,
            SoftLink,
            Stream,
            VirtualDataset,
        )

        if isinstance(item, Group):
            group = parent.require_group(name)
            _attributes(group, item)
            for key, child in item.children.items():
                self.item(group, key, child)
        elif isinstance(item, Dataset) and isinstance(item.value, Stream):
            ds = self.stream(parent, name, item.value.stream)
            if ds is not None:
                _attributes(ds, item)
        elif isinstance(item, Dataset):
            _attributes(parent.create_dataset(name, data=item.value.decode()), item)
        elif isinstance(item, SoftLink):
            parent[name] = h5py.SoftLink(item.target_path)
        elif isinstance(item, ExternalLink):
            parent[name] = h5py.ExternalLink(item.target_file, item.target_path)
        elif isinstance(item, ExternalBinaryDataset):
            ds = parent.create_dataset(name, shape=tuple(item.shape), dtype=item.dtype,
                                       external=[(f.name, f.offset, f.size or h5py.h5f.UNLIMITED)
                                                 for f in item.files])
            _attributes(ds, item)
        elif isinstance(item, VirtualDataset):
            _attributes(virtual_dataset(parent, name, item), item)

    def stream(self, parent: h5py.Group, name: str, stream: str) -> h5py.Dataset | None:
        """The streamed dataset at ``parent/name`` (None when the stream has no point)."""
        path = f"{parent.name.rstrip('/')}/{name}"
        if stream in self.placed:
            parent[name] = self.h5[self.placed[stream]]  # hard link: the same data
            return parent[name]
        ch = self.channels.get(stream)
        if ch is None:
            self.notes.append(f"h5maps path {path} names stream {stream!r}, which the scan "
                              f"does not have: not written")
            return None
        if ch.is_image:
            count, runs = self.images.get(stream, (0, ()))
            if not count:
                return None
            ds = image_vds(parent, name, ch, count, runs)
        else:
            ds = self.streamed.get(stream)
            if ds is None or len(ds) == 0:
                return None
            self.h5.move(ds.name, path)  # the staged name: explicit, see stage()
            ds = self.h5[path]
            for key in [k for k in ds.attrs if k != LOST_ATTR]:
                del ds.attrs[key]  # the saver's own (units, interpretation): the map's only
        self.placed[stream] = path
        return ds

    def _has_points(self, stream: str) -> bool:
        ch = self.channels[stream]
        if ch.is_image:
            return bool(self.images.get(stream, (0, ()))[0])
        ds = self.streamed.get(stream)
        return ds is not None and len(ds) > 0


def _attributes(obj: h5py.HLObject, item: Any) -> None:
    for key, value in item.attributes.items():
        obj.attrs[key] = value.decode()


def image_vds(parent: h5py.Group, name: str, ch: StreamDescription, count: int,
              runs: Sequence[tuple], fillvalue: Any = None) -> h5py.Dataset:
    """``count`` frames as a virtual dataset over the detector files (runs: pos, file,
    path, first, n), shaped and typed like blisswriter's. Fixed size (blisswriter's is
    unlimited along the frames, which nexusformat cannot read back). Both layouts (this
    one and the scan_info one in :mod:`.scanfile`) build their image stacks here."""
    layout = h5py.VirtualLayout(shape=(count, *ch.shape), dtype=ch.dtype,
                                maxshape=(count, *ch.shape))
    extent: dict[tuple[str, str], int] = {}
    for _, file, path, first, n in runs:
        extent[(file, path)] = max(extent.get((file, path), 0), first + n)
    for pos, file, path, first, n in runs:
        if pos >= count:
            continue
        n = min(n, count - pos)
        src = h5py.VirtualSource(file, path, shape=(extent[(file, path)], *ch.shape),
                                 dtype=ch.dtype)
        layout[pos:pos + n] = src[first:first + n]
    return parent.create_virtual_dataset(name, layout, fillvalue=fillvalue)


def virtual_dataset(parent: h5py.Group, name: str, item: Any) -> h5py.Dataset:
    """A ``virtual_dataset`` h5map item (hyperslab selections on both sides)."""
    shape = tuple(item.shape)
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    for src in item.virtual_sources:
        vspace = h5py.h5s.create_simple(shape)
        _select(vspace, src.vspace)
        sel = src.src_space
        dims = tuple(_extent(sel, i) for i in range(len(sel.start)))
        sspace = h5py.h5s.create_simple(dims)
        _select(sspace, sel)
        dcpl.set_virtual(vspace, src.src_file.encode(), src.src_dataset.encode(), sspace)
    space = h5py.h5s.create_simple(shape)
    dsid = h5py.h5d.create(parent.id, name.encode(), h5py.h5t.py_create(np.dtype(item.dtype)),
                           space, dcpl=dcpl)
    return h5py.Dataset(dsid)


def _select(space: Any, sel: Any) -> None:
    n = len(sel.start)
    space.select_hyperslab(tuple(sel.start), tuple(sel.count),
                           tuple(sel.stride) if sel.stride else (1,) * n,
                           tuple(sel.block) if sel.block else (1,) * n)


def _extent(sel: Any, i: int) -> int:
    stride = sel.stride[i] if sel.stride else 1
    block = sel.block[i] if sel.block else 1
    return sel.start[i] + stride * max(sel.count[i] - 1, 0) + block


def write_scan(h5: h5py.File, skeleton: h5py.Group, streamed: Mapping[str, h5py.Dataset],
               fin: Any, root: Any, entry_name: str) -> None:
    """Finalise a scan file from its h5map tree (``fin``: the saver's Finalization).

    Trimmed points (``fin.lost``) are marked as in the scan_info layout: the dataset's
    ``@lost_points`` and the entry's ``@beacon_ipy_incomplete``; notes go to the entry's
    ``saving_notes`` (only when there are some).
    """
    from beacon_ipy.saving.scanfile import INCOMPLETE_ATTR

    for name, ranges in fin.lost.items():
        ds = streamed.get(name)
        if ds is not None and ranges:
            stop = max(s for _, s in ranges)
            if len(ds) < stop:
                ds.resize(stop, axis=0)
            ds.attrs[LOST_ATTR] = np.array(ranges, dtype=np.int64)
    images = {n: (fin.lima_counts.get(n, 0), fin.lima_runs.get(n, ())) for n in fin.lima_runs}
    writer = TreeWriter(h5, fin.channels, streamed, images)
    writer.stage(skeleton.name)
    writer.write(root)
    entry = h5[entry_name]
    notes = list(fin.notes) + writer.notes
    if notes:
        entry["saving_notes"] = np.array(notes, dtype=h5py.string_dtype())
    if fin.lost:
        entry.attrs[INCOMPLETE_ATTR] = True
