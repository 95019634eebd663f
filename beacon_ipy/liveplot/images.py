"""The newest frame of a 2D detector, read from the file its reference points to.

Lima detectors write frames to HDF5 files; a scan's stream carries only references
``(file, dataset path, index)``. The live plot keeps the newest reference
(:class:`~beacon_ipy.liveplot.data.ImageStream`) and, at each redraw (at most ``max_rate``
a second, in the drawing thread: h5py blocks), :class:`FrameReader` reads that one frame,
unless it is the frame read last time. Frames bigger than the screen are reduced by
block averaging to at most :data:`MAX_SIDE` pixels a side. A frame that cannot be read
yet (file not flushed, moved, on another machine) is reported, never raised: the next
redraw tries again.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

#: Largest side of a drawn frame (bigger frames are block-averaged).
MAX_SIDE = 512


def _read_frame(ref: Any) -> np.ndarray:
    # The scan layer's reader (SWMR, locking fallbacks); its home moved between versions.
    try:
        from beacon_ipy.scans import read_frame
    except ImportError:  # the scan layer before blissdata
        from beacon_ipy.scans.nodes import read_frame
    return read_frame(ref)


def reduce(frame: np.ndarray, max_side: int = MAX_SIDE) -> np.ndarray:
    """``frame`` as float32, block-averaged so that no side exceeds ``max_side``."""
    frame = np.asarray(frame)
    if frame.ndim > 2:  # (channels, y, x) or (y, x, 1): the first plane
        frame = frame.reshape(-1, *frame.shape[-2:])[0]
    factor = max(1, math.ceil(max(frame.shape) / max_side))
    if factor == 1:
        return frame.astype(np.float32, copy=True)
    h, w = (frame.shape[0] // factor) * factor, (frame.shape[1] // factor) * factor
    blocks = frame[:h, :w].astype(np.float32).reshape(h // factor, factor, w // factor, factor)
    return blocks.mean(axis=(1, 3))


class FrameReader:
    """Reads the newest frame once per reference (thread-safe enough: one drawing thread)."""

    def __init__(self, max_side: int = MAX_SIDE):
        self.max_side = max_side
        self._ref: Any = None
        self._frame: np.ndarray | None = None
        self.reads = 0
        self.error = ""

    def read(self, ref: Any) -> np.ndarray | None:
        """The reduced frame of ``ref`` (cached), or the last good one if it cannot be
        read now (:attr:`error` says why)."""
        if ref is None:
            return self._frame
        if ref == self._ref and self._frame is not None:
            return self._frame
        try:
            frame = reduce(_read_frame(ref), self.max_side)
        except (OSError, KeyError, IndexError, ValueError) as exc:
            self.error = f"frame {getattr(ref, 'index', '?')} not readable yet: {exc}"
            return self._frame
        self._ref, self._frame, self.error = ref, frame, ""
        self.reads += 1
        return frame
