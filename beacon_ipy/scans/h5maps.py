"""``scan_info["h5maps"]``: the NeXus layout BLISS's writer (``blisswriter run URL``) saves.

BLISS computes it with ``blisswriter.mapping``, which no blisswriter on PyPI ships; this
module builds the same shape from beacon-ipy's stream descriptions and scan_info, in
blissdata's ``h5map`` JSON form (``{file path: root Group}``; validated with
``blissdata.h5map.HDF5Item`` so a bad map fails at the producer, not in the writer):

- root ``@NX_class=NXroot``, ``@default`` = the latest entry;
- entry ``"<number>.1"`` (NXentry): ``title``, ``start_time`` (and at the end
  ``end_time``, ``end_reason``), ``@default = "plotselect"``;
- ``instrument/<device>/<counter>`` (NXdetector; NXpositioner for ``axis:`` streams) =
  the streamed data (``{"type": "stream"}``: the writer reads it from Redis; image
  streams become virtual datasets over the detector files);
- ``instrument/positioners_start`` (and ``positioners_end``) from scan_info;
- ``measurement/<name>`` soft links to every stream; ``plotselect`` (NXdata) with
  ``@signal``/``@axes`` from the first ``plots`` hint or the acquisition chain.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from beacon_ipy.scans.scan_info import device_of
from beacon_ipy.scans.streams import StreamDescription


def _group(nx_class: str, children: dict | None = None, **attrs: Any) -> dict:
    return {"type": "group", "attributes": {"NX_class": nx_class, **attrs},
            "children": children or {}}


def _link(path: str) -> dict:
    return {"type": "soft_link", "target_path": path}


def _numbers(values: Mapping[str, Any]) -> dict:
    return {str(k): v for k, v in values.items() if isinstance(v, (int, float)) and
            not isinstance(v, bool)}


def entry_name(number: int) -> str:
    return f"{number}.1"


def scan_h5maps(file_path: str, number: int, info: Mapping[str, Any],
                streams: Mapping[str, StreamDescription]) -> dict[str, Any]:
    """``{file_path: root group}`` for one scan, at PREPARED."""
    entry = entry_name(number)
    instrument: dict[str, Any] = {}
    measurement: dict[str, Any] = {}
    paths: dict[str, str] = {}
    for name, desc in streams.items():
        device = device_of(name)
        counter = name.rsplit(":", 1)[-1]
        is_axis = device == "axis"
        dev = instrument.setdefault(device if not is_axis else counter,
                                    _group("NXpositioner" if is_axis else "NXdetector"))
        key = "value" if is_axis else counter
        attrs = {"units": desc.unit} if desc.unit else {}
        dev["children"][key] = {"type": "dataset", "attributes": attrs,
                                "value": {"type": "stream", "stream": name}} if attrs else \
            {"type": "stream", "stream": name}
        paths[name] = f"/{entry}/instrument/{device if not is_axis else counter}/{key}"
        measurement[name.replace(":", "_") if not is_axis else counter] = _link(paths[name])
    positioners = info.get("positioners") or {}
    start = _numbers(positioners.get("positioners_start") or {})
    if start:
        instrument["positioners_start"] = _group("NXcollection", start)
    children: dict[str, Any] = {
        "title": str(info.get("title", "")),
        "start_time": str(info.get("start_time", "")),
        "instrument": _group("NXinstrument", instrument),
        "measurement": _group("NXcollection", measurement),
    }
    signal, axes = _plot_signal(info, streams)
    if signal is not None:
        plot = {"signal": _link(paths[signal])}
        attrs = {"signal": "signal"}
        if axes:
            for i, axis in enumerate(axes):
                plot[f"axis{i}"] = _link(paths[axis])
            attrs["axes"] = [f"axis{i}" for i in range(len(axes))]
        children["plotselect"] = _group("NXdata", plot, **attrs)
    entry_group = _group("NXentry", children, **({"default": "plotselect"}
                                                 if signal is not None else {}))
    root = _group("NXroot", {entry: entry_group}, default=entry)
    validate(root)
    return {file_path: root}


def end_h5maps(h5maps: dict[str, Any], number: int, info: Mapping[str, Any]) -> None:
    """Add ``end_time``, ``end_reason`` and ``positioners_end`` (in place, at the end)."""
    entry = entry_name(number)
    for root in h5maps.values():
        group = root["children"].get(entry)
        if group is None:
            continue
        group["children"]["end_time"] = str(info.get("end_time", ""))
        group["children"]["end_reason"] = str(info.get("end_reason", ""))
        end = _numbers((info.get("positioners") or {}).get("positioners_end")
                       or info.get("positioners_end") or {})
        if end:
            group["children"]["instrument"]["children"]["positioners_end"] = \
                _group("NXcollection", end)
        validate(root)


def _plot_signal(info: Mapping[str, Any], streams: Mapping[str, StreamDescription]
                 ) -> tuple[str | None, list[str]]:
    for hint in info.get("plots") or ():
        signal = hint.get("signal") if isinstance(hint, dict) else None
        if signal in streams and not streams[signal].is_image:
            axes = [a for a in hint.get("axes") or () if a in streams]
            return signal, axes
    chain = next(iter((info.get("acquisition_chain") or {}).values()), {})
    scalars = [s for s in chain.get("scalars", []) if s in streams]
    masters = [s for s in (chain.get("master") or {}).get("scalars", []) if s in streams]
    if scalars:
        return scalars[0], masters[:1]
    return None, []


def validate(root: dict) -> None:
    """Raise ValueError if ``root`` is not a valid blissdata h5map tree."""
    from blissdata.h5map import HDF5Item

    try:
        HDF5Item.validate_python(root)
    except Exception as exc:
        raise ValueError(f"invalid h5maps for BLISS's writer: {exc}") from exc
