"""BLISS-shaped scan_info: what a producer did not give is filled in as BLISS builds it.

BLISS 2.4's scan_info carries (besides title, type, npoints, count_time...):
``channels`` ``{name: {"device", "dim", "display_name", "unit"}}``, ``devices``
``{device: {"channels": [...], "triggered_devices": [...]}}``, and
``acquisition_chain`` ``{top master: {"devices": [...], "scalars": [...], "spectra": [...],
"images": [...], "master": {"scalars": [...], "spectra": [], "images": []}}}`` where the
master's scalars are the scan's axes. Flint, the writer and beacon-ipy's saver and
live plot read those. :func:`complete_scan_info` adds the missing parts from the
streams, never overwriting what the producer set.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from beacon_ipy.scans.streams import StreamDescription, StreamKind


def device_of(name: str) -> str:
    """The device part of a BLISS channel name (``"simu:diode"`` -> ``"simu"``)."""
    return name.rsplit(":", 1)[0] if ":" in name else name


def complete_scan_info(info: dict[str, Any], streams: Mapping[str, StreamDescription]) -> None:
    """Fill ``channels``, ``devices``, ``acquisition_chain``, ``npoints``, ``count_time``
    and ``positioners`` in ``info`` (in place) when absent."""
    info.setdefault("npoints", 0)
    info.setdefault("count_time", 0.0)
    info.setdefault("data_dim", 1)
    positioners = info.setdefault("positioners", {})
    positioners.setdefault("positioners_start", {})
    positioners.setdefault("positioners_units", {})
    channels = info.setdefault("channels", {})
    for name, desc in streams.items():
        entry = channels.setdefault(name, {})
        entry.setdefault("device", device_of(name))
        entry.setdefault("dim", 2 if desc.is_image else desc.ndim)
        entry.setdefault("display_name", desc.display_name)
        if desc.unit:
            entry.setdefault("unit", desc.unit)
    devices = info.setdefault("devices", {})
    for name in streams:
        dev = devices.setdefault(device_of(name), {})
        dev.setdefault("channels", [])
        if name not in dev["channels"]:
            dev["channels"].append(name)
    if "acquisition_chain" not in info:
        axes = [n for n in streams if n.startswith("axis:")]
        by_kind = {k: [n for n, d in streams.items() if d.kind is k] for k in StreamKind}
        masters = axes or by_kind[StreamKind.SCALAR][:1]
        info["acquisition_chain"] = {"timer": {
            "devices": sorted({device_of(n) for n in streams}),
            "scalars": [n for n in by_kind[StreamKind.SCALAR] if n not in masters],
            "spectra": by_kind[StreamKind.SPECTRUM],
            "images": by_kind[StreamKind.IMAGE],
            "master": {"scalars": masters, "spectra": [], "images": []},
        }}
