"""What a walk yields: ``(event_type, node, event_data)`` with typed, immutable event data.

Every event data object carries a ``cursor``: pass it as ``walk_events(after=cursor)``
to resume a walk so that this event (and the others read in the same batch) is
delivered again, then everything that followed. Data events are index-addressed
(``start``/``stop``), so processing one twice is harmless: that is how a saver resumes
after a crash.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np


class EventType(str, enum.Enum):
    """Kinds of events; compares equal to its name (``EventType.NEW_DATA == "NEW_DATA"``)."""

    NEW_NODE = "NEW_NODE"
    NEW_DATA = "NEW_DATA"
    END_SCAN = "END_SCAN"

    def __str__(self) -> str:
        return self.value


class EndReason(str, enum.Enum):
    """Why a scan ended (``scan_info["end_reason"]`` as BLISS writes it, normalised).

    SUCCESS, FAILURE and ABORTED (BLISS's ``USER_ABORT``) come from the producer;
    DELETION from ``DataStore.delete_scan``; DIED is decided by a consumer's runner when
    the producer is gone (the dead-producer rule, :mod:`beacon_ipy.scans.consumer`).
    """

    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    ABORTED = "ABORTED"
    DELETION = "DELETION"
    DIED = "DIED"

    @classmethod
    def from_info(cls, value: object) -> EndReason:
        """The reason for a ``scan_info["end_reason"]`` value (unknown ones: FAILURE)."""
        text = str(value or "").upper()
        if text in ("USER_ABORT", "ABORT", "ABORTED", "KEYBOARDINTERRUPT"):
            return cls.ABORTED
        try:
            return cls(text)
        except ValueError:
            return cls.FAILURE

    def __str__(self) -> str:
        return self.value


class ImageRef(NamedTuple):
    """Where one image lives: an HDF5 file, the dataset path in it, the frame index."""

    file: str
    path: str
    index: int


@dataclass(frozen=True, slots=True)
class NewNode:
    """Event data of NEW_NODE (a scan appeared in its session, or a node in its scan)."""

    cursor: str


@dataclass(frozen=True, slots=True)
class ChannelData:
    """Event data of NEW_DATA on a channel: points ``start`` to ``stop`` (exclusive).

    ``data`` has shape ``(stop - start, *channel_shape)``; it is a read-only view over
    the received bytes (copy it to modify it).
    """

    start: int
    stop: int
    data: np.ndarray
    cursor: str

    def __len__(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True, slots=True)
class ImageData:
    """Event data of NEW_DATA on a lima node: references of images ``start`` to ``stop``."""

    start: int
    stop: int
    references: tuple[ImageRef, ...]
    cursor: str

    def __len__(self) -> int:
        return self.stop - self.start


def _fast_constructor(cls):
    """A constructor for a 4-field frozen slots dataclass that skips the frozen
    ``__setattr__`` path (positional, every field given): the decoder makes many."""
    s0, s1, s2, s3 = (getattr(cls, f).__set__ for f in cls.__slots__)
    new = object.__new__

    def make(a, b, c, d):
        obj = new(cls)
        s0(obj, a)
        s1(obj, b)
        s2(obj, c)
        s3(obj, d)
        return obj

    return make


@dataclass(frozen=True, slots=True)
class ScanEnd:
    """Event data of END_SCAN, and what ``ScanConsumer.end_scan`` receives.

    ``reason`` is an :class:`EndReason` value; ``by`` is ``"producer"`` (the scan was
    CLOSED), ``"watchdog"`` (the dead-producer rule ended it) or ``"deleted"`` (it
    vanished from Redis); ``counts`` maps stream names to the number of points/images
    delivered; ``info`` is the final scan_info (e.g. ``positioners["positioners_end"]``);
    ``detail`` says why in words (for DIED: which rule fired).
    """

    reason: str
    by: str
    time: float
    counts: dict[str, int] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    cursor: str = ""
    detail: str = ""


make_channel_data = _fast_constructor(ChannelData)
make_image_data = _fast_constructor(ImageData)
