"""The NeXus structure of a scan entry, as BLISS writes it (NOTES §4, docs/saving.md).

Naming rule (decided at the end of the scan, from every channel of the scan, so that it
does not depend on when a saver joined):

* ``axis:<motor>`` -> ``instrument/<motor>`` (NXpositioner, field ``value``);
* a 0d channel ``<controller>:<counter>`` -> ``instrument/<counter>`` (NXdetector,
  field ``data``);
* a 1d channel or a lima node ``<controller>:<name>`` -> ``instrument/<controller>``
  (NXdetector, field ``data``);
* a name claimed twice (or a reserved one) -> the full channel name, ``:`` -> ``_``.

``measurement/<same name>`` links every channel. NXdata groups come from the
``plots`` hints of scan_info (``signal``, ``axes``, ``auxiliary_signals``), or are made up
(0d signal over the master axes; one per spectrum and per image channel) when there are
none. A plot whose fields have different lengths (an aborted scan) shows the common
length through virtual datasets into the same file.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np

from beacon_ipy.saving.h5values import hdf5_name, set_nx_class, write_dict, write_value
from beacon_ipy.scans.streams import StreamDescription, StreamKind

RESERVED_INSTRUMENT = {"positioners_start", "positioners_end", "positioners"}
RESERVED_ENTRY = {"title", "start_time", "end_time", "end_reason", "instrument", "measurement",
                  "scan_info", "scan_end_info", "saving_notes"}
AXIS_PREFIX = "axis:"


def is_positioner(stream: StreamDescription) -> bool:
    """A motor: a 0d stream named ``axis:<motor>`` (BLISS's naming)."""
    return stream.kind is StreamKind.SCALAR and stream.name.startswith(AXIS_PREFIX)


@dataclass(frozen=True)
class NexusName:
    """Where a channel goes: ``instrument/<group>/<field>``, linked as ``measurement/<group>``."""

    group: str
    field: str
    nx_class: str


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", name) or "_"


def nexus_names(channels: Sequence[StreamDescription]) -> dict[str, NexusName]:
    """The naming rule above, for every stream (keyed by stream name)."""
    candidates: dict[str, str] = {}
    for ch in channels:
        if is_positioner(ch):
            cand = ch.name[len(AXIS_PREFIX):]
        elif ch.kind is StreamKind.SCALAR:
            cand = ch.name.rsplit(":", 1)[-1]
        else:
            cand = ch.name.split(":", 1)[0]
        candidates[ch.name] = _safe(cand)
    uses: dict[str, int] = {}
    for cand in candidates.values():
        uses[cand] = uses.get(cand, 0) + 1
    names: dict[str, NexusName] = {}
    taken: set[str] = set(RESERVED_INSTRUMENT)
    for ch in channels:
        cand = candidates[ch.name]
        if uses[cand] > 1 or cand in taken:
            cand = _safe(ch.name.replace(":", "_"))
        base, k = cand, 2
        while cand in taken:
            cand, k = f"{base}_{k}", k + 1
        taken.add(cand)
        if is_positioner(ch):
            names[ch.name] = NexusName(cand, "value", "NXpositioner")
        else:
            names[ch.name] = NexusName(cand, "data", "NXdetector")
    return names


# --------------------------------------------------------------------------- NXdata
@dataclass(frozen=True)
class PlotSpec:
    """An NXdata group to write: channel names for signal, axes and auxiliary signals."""

    name: str
    signal: str
    axes: tuple[str, ...] = ()
    auxiliary: tuple[str, ...] = ()


def master_axes(scan_info: Mapping[str, Any]) -> list[str]:
    """The scan's master axes (channel names) from its acquisition chain."""
    axes: list[str] = []
    chain = scan_info.get("acquisition_chain")
    if isinstance(chain, Mapping):
        for top in chain.values():
            master = top.get("master") if isinstance(top, Mapping) else None
            scalars = master.get("scalars") if isinstance(master, Mapping) else None
            if isinstance(scalars, list | tuple):
                axes += [str(s) for s in scalars if str(s) not in axes]
    return axes


def plot_specs(scan_info: Mapping[str, Any], channels: Sequence[StreamDescription]
               ) -> tuple[list[PlotSpec], list[str]]:
    """NXdata groups to write (the default first), and notes on hints that were unusable."""
    by_name = {ch.name: ch for ch in channels}
    notes: list[str] = []
    specs: list[PlotSpec] = []
    axes_default = [a for a in master_axes(scan_info) if a in by_name]
    hints = scan_info.get("plots")
    if isinstance(hints, list | tuple) and hints:
        for k, hint in enumerate(hints):
            hint = _bliss_hint(hint)
            if not isinstance(hint, Mapping) or "signal" not in hint:
                notes.append(f"plot hint #{k} has no 'signal': no NXdata for it")
                continue
            signal = str(hint["signal"])
            if signal not in by_name:
                notes.append(f"plot hint #{k}: signal {signal!r} is not a channel of the scan")
                continue
            if by_name[signal].ndim == 0:
                axes = [str(a) for a in hint.get("axes", axes_default) or ()]
            else:
                axes = []
            aux = [str(a) for a in hint.get("auxiliary_signals", ()) or ()]
            missing = [a for a in axes + aux if a not in by_name]
            if missing:
                notes.append(f"plot hint #{k}: {missing} are not channels of the scan; "
                             f"left out of the plot")
            axes = [a for a in axes if a in by_name]
            aux = [a for a in aux if a in by_name and by_name[a].shape == by_name[signal].shape]
            specs.append(PlotSpec(str(hint.get("name") or f"plot{k}"), signal, tuple(axes),
                                  tuple(aux)))
        if specs:
            return specs, notes
    # no (usable) hints: a 0d plot over the master axes, then one per spectrum/image channel
    scalars = [ch.name for ch in channels if ch.kind is StreamKind.SCALAR
               and ch.name not in axes_default and not is_positioner(ch)]
    axes = tuple(axes_default)
    if not scalars:  # only masters (e.g. a lone counter made the master): plot them alone
        scalars = [ch.name for ch in channels
                   if ch.kind is StreamKind.SCALAR and not is_positioner(ch)]
        axes = ()
    if scalars:
        specs.append(PlotSpec("data_0d", scalars[0], axes, tuple(scalars[1:])))
    for ch in channels:
        if ch.ndim >= 1:
            specs.append(PlotSpec(f"data_{ch.ndim}d_{ch.name.replace(':', '_')}", ch.name))
    return specs, notes


def _bliss_hint(hint: Any) -> Any:
    """BLISS's plot description (``{"kind": "curve-plot", "items": [{"kind": "curve",
    "x": ..., "y": ...}]}``) as a signal/axes hint; beacon-ipy's hints pass unchanged."""
    if not isinstance(hint, Mapping) or "signal" in hint:
        return hint
    items = [i for i in hint.get("items") or () if isinstance(i, Mapping) and i.get("y")]
    if not items:
        return hint
    first = items[0]
    out = {"name": hint.get("name") or "plot", "signal": first["y"],
           "auxiliary_signals": [i["y"] for i in items[1:] if i.get("x") == first.get("x")]}
    if first.get("x"):
        out["axes"] = [first["x"]]
    return out


def nxdata_name(entry: h5py.Group, name: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_]", "_", name).strip("_") or "plot"
    if name in RESERVED_ENTRY:
        name = f"plot_{name}"
    base, k = name, 2
    while name in entry:
        name, k = f"{base}_{k}", k + 1
    return name


def write_nxdata(entry: h5py.Group, spec: PlotSpec, datasets: Mapping[str, h5py.Dataset],
                 short: Mapping[str, str]) -> str | None:
    """Write ``spec`` as an NXdata group; return its name (None if it has no point yet).

    Fields are hard links to the detector datasets (which carry ``interpretation`` and
    ``units``), or views when lengths differ.
    """
    fields = [spec.signal, *spec.axes, *spec.auxiliary]
    n = min(len(datasets[f]) for f in fields)
    if n == 0:
        return None
    group = entry.create_group(nxdata_name(entry, spec.name))
    group.attrs["NX_class"] = "NXdata"
    names: dict[str, str] = {}
    for channel in dict.fromkeys(fields):
        name = short[channel]
        names[channel] = name
        _link_view(group, name, datasets[channel], n)
    group.attrs["signal"] = names[spec.signal]
    if spec.axes:
        group.attrs["axes"] = [names[a] for a in spec.axes]
    if spec.auxiliary:
        group.attrs["auxiliary_signals"] = [names[a] for a in spec.auxiliary]
    return group.name.rsplit("/", 1)[-1]


def _link_view(group: h5py.Group, name: str, dataset: h5py.Dataset, n: int) -> None:
    """``group[name]``: the dataset itself if it has ``n`` points, else a view of ``n``."""
    if len(dataset) == n:
        group[name] = dataset
        return
    layout = h5py.VirtualLayout(shape=(n, *dataset.shape[1:]), dtype=dataset.dtype)
    if dataset.is_virtual:
        # a view over a view would chain files; map the first n images directly
        for vmap in dataset.virtual_sources():
            src = h5py.VirtualSource(vmap.file_name, vmap.dset_name,
                                     shape=vmap.src_space.shape)
            sel_v = vmap.vspace.get_select_bounds()
            sel_s = vmap.src_space.get_select_bounds()
            lo, hi = sel_v[0][0], min(sel_v[1][0], n - 1)
            if lo > hi:
                continue
            s0 = sel_s[0][0]
            layout[lo:hi + 1] = src[s0:s0 + hi - lo + 1]
    else:
        layout[:] = h5py.VirtualSource(".", dataset.name, shape=dataset.shape)[:n]
    vds = group.create_virtual_dataset(name, layout)
    for key, value in dataset.attrs.items():
        vds.attrs[key] = value


# ------------------------------------------------------------------------ instrument
def write_positioners(instrument: h5py.Group, name: str, positions: Any,
                      units: Mapping[str, Any]) -> None:
    """``instrument/<name>`` (NXcollection): one scalar per motor, with units."""
    if not isinstance(positions, Mapping) or not positions:
        return
    group = instrument.create_group(name)
    group.attrs["NX_class"] = "NXcollection"
    for motor, value in positions.items():
        write_value(group, motor, value)
        unit = units.get(motor) if isinstance(units, Mapping) else None
        key = hdf5_name(motor)
        if unit and key in group:
            group[key].attrs["units"] = str(unit)


def merge_metadata(instrument: h5py.Group, metadata: Mapping[Any, Any]) -> None:
    """scan_info's ``instrument`` dict: into the matching detector group, or a new group."""
    for key, value in metadata.items():
        name = hdf5_name(key)
        if isinstance(value, Mapping) and name in instrument and isinstance(
                instrument[name], h5py.Group):
            target = instrument[name]
            for k, v in value.items():
                write_value(target, k, v)
        elif isinstance(value, Mapping):
            group = instrument.create_group(_unique(instrument, name))
            write_dict(group, value)
        else:
            write_value(instrument, key, value)


def _unique(group: h5py.Group, name: str) -> str:
    base, k = name, 2
    while name in group:
        name, k = f"{base}_{k}", k + 1
    return name


def set_default_chain(root: h5py.Group, entry: h5py.Group, nxdata: str | None) -> None:
    """``@default`` root -> entry -> NXdata (NX_class added where missing)."""
    set_nx_class(root, "NXroot")
    set_nx_class(entry, "NXentry")
    root.attrs["default"] = entry.name.rsplit("/", 1)[-1]
    if nxdata:
        entry.attrs["default"] = nxdata


def string_list(values: Iterable[str]) -> np.ndarray:
    """An array HDF5 stores as variable-length UTF-8 strings."""
    return np.array(list(values), dtype=h5py.string_dtype())
