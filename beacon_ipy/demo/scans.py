"""Demo scans (ascan, timescan, amesh) published through the public producer API only.

Each point: move motors, count for ``count_time`` (``gevent.sleep``, so listeners in
the same process keep running), read the simulated counters, MCA and 2D detector,
write the frame to the detector's HDF5 file, then publish one block with every
channel plus the image reference.
"""

from __future__ import annotations

import getpass
import math
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import gevent
import numpy as np

from beacon_ipy.demo.detector import DATASET_PATH, SimDetector2D
from beacon_ipy.demo.simulation import MCA_BINS, MCA_ENERGY_PER_BIN, SimMotor, SimSample
from beacon_ipy.scans import (
    ImageFiles,
    ScanPublisher,
    StreamDescription,
    create_scan,
    reserve_scan_number,
)

DIODE, MONITOR, NORM = "simu:diode", "simu:monitor", "simu:diode_norm"
ELAPSED, EPOCH = "timer:elapsed_time", "timer:epoch"
MCA, IMAGE = "mca1:spectrum", "simu2d:image"


def next_scan_number(session: str, redis_url: str | None = None) -> int:
    """Reserve the session's next scan number (the demo needs it to name its folder)."""
    return reserve_scan_number(session, redis_url)


def default_data_dir() -> Path:
    """Where demo scans (detector files, the scan's data folder) go by default."""
    import platformdirs

    return platformdirs.user_data_path("beacon-ipy") / "demo-data"


@dataclass
class Beamline:
    """The simulated instrument: two motors, a sample, an MCA and a 2D detector."""

    seed: int | None = None
    motors: dict[str, SimMotor] = field(default_factory=dict)
    sample: SimSample = field(default_factory=SimSample)
    detector: SimDetector2D = field(default_factory=lambda: SimDetector2D("simu2d"))

    def __post_init__(self):
        if not self.motors:
            self.motors = {"sx": SimMotor("sx", 0.0), "sy": SimMotor("sy", 0.0)}
        self.sample.rng = np.random.default_rng(self.seed)

    def positioners(self) -> dict[str, float]:
        return {name: m.position for name, m in self.motors.items()}


_default_beamline: Beamline | None = None


def get_beamline() -> Beamline:
    """The process's shared simulated beamline (motor positions persist between scans)."""
    global _default_beamline
    if _default_beamline is None:
        _default_beamline = Beamline()
    return _default_beamline


@dataclass
class ScanOptions:
    """Where and how demo scans are published."""

    session: str = "demo"
    redis_url: str | None = None
    data_dir: str | Path | None = None
    progress: bool | None = None  # None: only on a terminal
    with_mca: bool = True
    with_image: bool = True
    image_shape: tuple[int, int] = (64, 80)
    frames_per_file: int = 100
    beamline: Beamline | None = None
    producer_options: dict[str, Any] = field(default_factory=dict)


def _now_iso() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat()


def _run(opts: ScanOptions, scan_type: str, title: str, count_time: float,
         axes: list[tuple[str, str]], points: list[dict[str, float]],
         extra_info: dict[str, Any]) -> ScanPublisher:
    """Publish one scan: ``points`` are motor targets (empty dicts for a timescan)."""
    bl = opts.beamline or get_beamline()
    npoints = len(points)
    axis_names = [f"axis:{m}" for m, _ in axes]
    scalars = [ELAPSED, EPOCH, DIODE, MONITOR, NORM]
    S = StreamDescription
    channels: list[StreamDescription] = [S.scalar(f"axis:{m}", unit=unit) for m, unit in axes]
    channels += [S.scalar(ELAPSED, unit="s"), S.scalar(EPOCH, unit="s"),
                 S.scalar(DIODE, unit="counts"), S.scalar(MONITOR, unit="counts"),
                 S.scalar(NORM)]
    spectra, images = [], []
    if opts.with_mca:
        spectra.append(MCA)
        channels.append(S.spectrum(MCA, MCA_BINS, "float32", unit="counts"))
    if opts.with_image:
        images.append(IMAGE)
    master_channels = axis_names or [ELAPSED]
    units = {c.name: c.unit for c in channels}
    scan_info: dict[str, Any] = {
        "type": scan_type,
        "title": title,
        "npoints": npoints,
        "count_time": float(count_time),
        "start_time": _now_iso(),
        "user_name": getpass.getuser(),
        "data_dim": 2 if scan_type == "amesh" else 1,
        "acquisition_chain": {
            "timer": {
                "master": {"scalars": master_channels,
                           "units": {c: units[c] for c in master_channels}},
                "scalars": [c for c in axis_names + scalars if c not in master_channels],
                "spectra": spectra,
                "images": images,
            }
        },
        "channels": {c.name: {"unit": c.unit, "dim": c.ndim, "display_name": c.display_name,
                              "device": c.name.split(":")[0]} for c in channels},
        "positioners": {
            "positioners_start": bl.positioners(),
            "positioners_units": {n: m.unit for n, m in bl.motors.items()},
        },
        "instrument": {
            "name": "beacon-ipy simulated beamline",
            "source": {"type": "Synchrotron X-ray Source", "current_mA": np.float64(200.0)},
            bl.detector.name: {"type": "simulated lima", "pixel_size_um": np.array([55.0, 55.0]),
                               "frames_per_file": opts.frames_per_file},
            "mca1": {"type": "simulated mca", "bins": MCA_BINS,
                     "energy_per_bin": MCA_ENERGY_PER_BIN, "energy_unit": "keV"},
        },
        "plots": _plot_hints(scan_type, axis_names, images),
    }
    if opts.with_image:
        scan_info["channels"][IMAGE] = {"unit": "counts", "dim": 2, "display_name": "image",
                                        "device": bl.detector.name}
    scan_info.update(extra_info)
    data_dir = (Path(opts.data_dir) if opts.data_dir else default_data_dir()).absolute()
    number = next_scan_number(opts.session, opts.redis_url)
    scan_dir = data_dir / opts.session / f"scan{number:04d}"
    det = bl.detector
    if opts.with_image:
        det.shape = tuple(opts.image_shape)
        det.frames_per_file = opts.frames_per_file
        det.prepare(scan_dir, prefix=det.name)
        channels.append(S.image(IMAGE, tuple(opts.image_shape), "uint16", unit="counts",
                                files=ImageFiles(str(scan_dir / f"{det.name}_%04d.h5"),
                                                 DATASET_PATH, opts.frames_per_file)))
    scan = create_scan(opts.session, scan_info, channels, redis_url=opts.redis_url,
                       path=data_dir / opts.session / f"{opts.session}.h5", number=number,
                       **opts.producer_options)
    bar = _progress(opts, scan, npoints)
    try:
        with scan:
            t0 = time.time()
            for point in points:
                for name, target in point.items():
                    bl.motors[name].move(target)
                gevent.sleep(count_time)  # counting; lets other greenlets run
                _publish_point(scan, bl, opts, axes, count_time, t0)
                bar.update(1)
            det.close()  # as Lima: files closed before the stream is sealed (readers of a
            # sealed lima stream open every file, the last one too, without SWMR)
            scan.end("SUCCESS", {"positioners_end": bl.positioners(), "end_time": _now_iso()})
    finally:
        det.close()
        bar.close()
    return scan


def _publish_point(scan: ScanPublisher, bl: Beamline, opts: ScanOptions,
                   axes: list[tuple[str, str]], count_time: float, t0: float) -> None:
    motors = [m for m, _ in axes]
    x = bl.motors[motors[0]].position if motors else 0.5 + 0.3 * math.sin(time.time() - t0)
    y = bl.motors[motors[1]].position if len(motors) > 1 else None
    diode = bl.sample.diode(x, count_time, y)
    monitor = bl.sample.monitor(count_time)
    now = time.time()
    block: dict[str, Any] = {f"axis:{m}": bl.motors[m].position for m in motors}
    block.update({ELAPSED: now - t0, EPOCH: now, DIODE: diode, MONITOR: monitor,
                  NORM: diode / monitor if monitor else 0.0})
    if opts.with_mca:
        block[MCA] = bl.sample.spectrum(x, count_time, y)
    if opts.with_image:
        frame = bl.sample.image(tuple(opts.image_shape), x, count_time, y)
        bl.detector.save(frame)
    scan.push(block)
    if opts.with_image:
        scan.push_images(IMAGE)


def _plot_hints(scan_type: str, axes: list[str], images: list[str]) -> list[dict[str, Any]]:
    """Plot hints: the first plot is the default one (its ``signal`` is the default signal)."""
    if scan_type == "amesh":
        plots = [{"kind": "scatter-plot", "name": "diode map", "signal": DIODE,
                  "axes": axes[::-1], "auxiliary_signals": [MONITOR, NORM]}]
    else:
        x = axes[0] if axes else ELAPSED
        plots = [{"kind": "curve-plot", "name": "diode", "signal": DIODE, "axes": [x],
                  "auxiliary_signals": [MONITOR, NORM]}]
    if images:
        plots.append({"kind": "image-plot", "name": "detector", "signal": images[0]})
    return plots


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(opts: ScanOptions, scan: ScanPublisher, total: int):
    show = opts.progress if opts.progress is not None else sys.stderr.isatty()
    if not show:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=f"{opts.session} #{scan.scan_nb} {scan.scan_info['type']}",
                unit="pt", leave=True, file=sys.stderr)


def _options(kwargs: dict[str, Any]) -> ScanOptions:
    fields = ScanOptions.__dataclass_fields__
    unknown = set(kwargs) - set(fields)
    if unknown:
        raise TypeError(f"unknown option(s) {sorted(unknown)}; known: {sorted(fields)}")
    return ScanOptions(**kwargs)


def ascan(motor: str = "sx", start: float = 0.0, stop: float = 1.0, npoints: int = 11,
          count_time: float = 0.1, **options) -> ScanPublisher:
    """Step scan of one simulated motor from ``start`` to ``stop`` (inclusive).

    ``options``: fields of :class:`ScanOptions` (``session``, ``redis_url``,
    ``data_dir``, ``progress``, ``with_mca``, ``with_image``...).
    """
    if npoints < 1:
        raise ValueError("npoints must be >= 1")
    opts = _options(options)
    points = [{motor: float(p)} for p in np.linspace(start, stop, npoints)]
    unit = (opts.beamline or get_beamline()).motors[motor].unit
    return _run(opts, "ascan", f"ascan {motor} {start} {stop} {npoints} {count_time}",
                count_time, [(motor, unit)], points,
                {"start": [start], "stop": [stop]})


def timescan(count_time: float = 0.1, npoints: int = 10, **options) -> ScanPublisher:
    """Count ``npoints`` times without moving anything."""
    if npoints < 1:
        raise ValueError("npoints must be >= 1")
    opts = _options(options)
    return _run(opts, "timescan", f"timescan {count_time} npoints={npoints}", count_time, [],
                [{} for _ in range(npoints)], {})


def amesh(motor1: str = "sx", start1: float = 0.0, stop1: float = 1.0, npoints1: int = 5,
          motor2: str = "sy", start2: float = 0.0, stop2: float = 1.0, npoints2: int = 5,
          count_time: float = 0.1, **options) -> ScanPublisher:
    """2D mesh: ``motor1`` is the fast axis, ``motor2`` the slow one."""
    if npoints1 < 1 or npoints2 < 1:
        raise ValueError("npoints1 and npoints2 must be >= 1")
    opts = _options(options)
    bl = opts.beamline or get_beamline()
    points = [{motor1: float(x), motor2: float(y)}
              for y in np.linspace(start2, stop2, npoints2)
              for x in np.linspace(start1, stop1, npoints1)]
    title = (f"amesh {motor1} {start1} {stop1} {npoints1} {motor2} {start2} {stop2} "
             f"{npoints2} {count_time}")
    return _run(opts, "amesh", title, count_time,
                [(motor1, bl.motors[motor1].unit), (motor2, bl.motors[motor2].unit)], points,
                {"npoints1": npoints1, "npoints2": npoints2, "shape": [npoints2, npoints1],
                 "start": [start1, start2], "stop": [stop1, stop2]})


def demo_sequence(npoints: int, count_time: float, **options) -> Iterator:
    """The demo's endless cycle of scans: ascan, timescan, amesh, ascan..."""
    side = max(1, math.ceil(math.sqrt(npoints)))
    while True:
        yield lambda: ascan("sx", 0.0, 1.0, npoints, count_time, **options)
        yield lambda: timescan(count_time, npoints, **options)
        yield lambda: amesh("sx", 0.0, 1.0, side, "sy", 0.0, 1.0, max(1, math.ceil(npoints / side)),
                            count_time, **options)
