"""Simulated acquisitions published into a session: the project's demo data source.

``run_demo(...)`` (and ``beacon-ipy demo``) runs ascan / timescan / amesh in turn with
counters, an MCA spectrum and a 2D detector writing real HDF5 frames. Everything goes
through the public producer API (:mod:`beacon_ipy.scans`).
"""

from __future__ import annotations

from beacon_ipy.demo.run import run_demo
from beacon_ipy.demo.scans import Beamline, ScanOptions, amesh, ascan, get_beamline, timescan

__all__ = ["Beamline", "ScanOptions", "amesh", "ascan", "get_beamline", "run_demo", "timescan"]
