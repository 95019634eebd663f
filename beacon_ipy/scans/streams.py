"""One description of a scan's data stream, whoever produced it (beacon-ipy or BLISS).

:class:`StreamDescription` replaces the four former descriptions of a channel
(``ChannelSpec`` for producers, ``ChannelNode``'s attributes and ``ChannelDecl``/
``ChannelMeta`` in the saver and live plot): producers declare streams with it,
consumers receive it in ``new_stream``, the seed's nodes expose it as ``node.stream``.

It is read from a blissdata stream (``StreamDescription.from_blissdata``) and the
scan's ``scan_info["channels"]`` entry (BLISS puts the display name and unit there).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

_NUMERIC_KINDS = "biuf"


class StreamKind(str, enum.Enum):
    """What one point of a stream is: a scalar, a 1D array (spectrum) or an image.

    Compares equal to its value (``StreamKind.SCALAR == "0d"``).
    """

    SCALAR = "0d"
    SPECTRUM = "1d"
    IMAGE = "image"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class ImageFiles:
    """Where an image stream's frames are saved (blissdata's lima ``saving`` info).

    Frame ``i`` of the scan is frame ``i % frames_per_file`` of dataset ``data_path`` in
    file ``file_pattern % (i // frames_per_file + file_offset)`` (a ``%``-pattern, e.g.
    ``/data/scan0001/simu2d_%04d.h5``). ``file_format`` is ``"hdf5"``.
    """

    file_pattern: str
    data_path: str
    frames_per_file: int
    file_offset: int = 0
    file_format: str = "hdf5"

    def file_of(self, index: int) -> tuple[str, int]:
        """``(file path, frame index in that file)`` of frame ``index`` of the scan."""
        number, in_file = divmod(int(index), self.frames_per_file)
        return self.file_pattern % (number + self.file_offset), in_file


@dataclass(frozen=True)
class StreamDescription:
    """A data stream of a scan.

    - ``name``: the stream's name (BLISS: ``"<device>:<counter>"``, e.g. ``"simu:diode"``,
      ``"axis:sx"``, ``"simu2d:image"``).
    - ``kind``: :class:`StreamKind`; ``dtype`` and ``shape`` describe ONE point
      (``shape == ()`` for 0d, ``(n,)`` for 1d, ``(height, width)`` for images).
    - ``unit`` and ``display_name``: from ``scan_info["channels"][name]`` (``""`` and the
      part after the last ``:`` when absent).
    - ``files``: for images, where the frames are saved (:class:`ImageFiles`), else None.
    - ``info``: the stream's own info dict as blissdata stores it (read-only use).
    """

    name: str
    kind: StreamKind
    dtype: np.dtype
    shape: tuple[int, ...] = ()
    unit: str = ""
    display_name: str = ""
    files: ImageFiles | None = None
    info: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        dtype = np.dtype(self.dtype)
        shape = tuple(int(n) for n in self.shape)
        kind = StreamKind(self.kind)
        if not self.name:
            raise ValueError("a stream needs a non-empty name")
        if dtype.kind not in _NUMERIC_KINDS or dtype.fields is not None:
            raise ValueError(f"stream {self.name!r}: dtype {dtype} is not numeric")
        expected = {StreamKind.SCALAR: 0, StreamKind.SPECTRUM: 1, StreamKind.IMAGE: 2}[kind]
        if len(shape) != expected:
            raise ValueError(f"stream {self.name!r} of kind {kind.value} needs a shape of "
                             f"{expected} dimension(s), got {shape}")
        if kind is StreamKind.IMAGE and self.files is not None and self.files.frames_per_file < 1:
            raise ValueError(f"stream {self.name!r}: frames_per_file must be >= 1")
        object.__setattr__(self, "dtype", dtype)
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "kind", kind)
        if not self.display_name:
            object.__setattr__(self, "display_name", self.name.split(":")[-1])

    # -- convenience constructors (producers) --------------------------------------
    @classmethod
    def scalar(cls, name: str, dtype: Any = "float64", unit: str = "",
               display_name: str = "") -> StreamDescription:
        """A 0d stream (one number per point)."""
        return cls(name, StreamKind.SCALAR, np.dtype(dtype), (), unit, display_name)

    @classmethod
    def spectrum(cls, name: str, length: int, dtype: Any = "float32", unit: str = "",
                 display_name: str = "") -> StreamDescription:
        """A 1d stream (one array of ``length`` values per point)."""
        return cls(name, StreamKind.SPECTRUM, np.dtype(dtype), (int(length),), unit,
                   display_name)

    @classmethod
    def image(cls, name: str, shape: tuple[int, int], dtype: Any = "uint16",
              files: ImageFiles | None = None, unit: str = "",
              display_name: str = "") -> StreamDescription:
        """An image stream; frames live in files (``files``), Redis carries their count."""
        return cls(name, StreamKind.IMAGE, np.dtype(dtype), tuple(shape), unit, display_name,
                   files)

    @classmethod
    def array(cls, name: str, dtype: Any = "float64", shape: tuple[int, ...] = (),
              unit: str = "", display_name: str = "") -> StreamDescription:
        """A numeric stream of 0 or 1 dimension, kind chosen from ``shape``."""
        kind = StreamKind.SCALAR if len(shape) == 0 else StreamKind.SPECTRUM
        return cls(name, kind, np.dtype(dtype), tuple(shape), unit, display_name)

    # -- derived -------------------------------------------------------------------
    @property
    def is_image(self) -> bool:
        return self.kind is StreamKind.IMAGE

    @property
    def ndim(self) -> int:
        """Dimensions of one point (0, 1 or 2)."""
        return len(self.shape)

    @property
    def point_bytes(self) -> int:
        """Size of one point in Redis (0 for images: only their count is in Redis)."""
        return 0 if self.is_image else self.dtype.itemsize * math.prod(self.shape)

    @property
    def node_type(self) -> str:
        """The seed API's node type: ``"channel"`` (0d/1d) or ``"lima"`` (images)."""
        return "lima" if self.is_image else "channel"

    @classmethod
    def from_blissdata(cls, stream: Any, scan_info: Mapping[str, Any] | None = None
                       ) -> StreamDescription:
        """The description of a blissdata stream (``scan.streams[name]``).

        Numeric streams become 0d/1d (2D numeric streams are reported as images without
        files); lima streams become images with their saving info.
        """
        info = dict(stream.info)
        meta = dict(((scan_info or {}).get("channels") or {}).get(stream.name) or {})
        unit = str(meta.get("unit") or info.get("unit") or "")
        display = str(meta.get("display_name") or "")
        dtype = np.dtype(info.get("dtype", "float64"))
        shape = tuple(int(n) for n in (info.get("shape") or ()))
        lima = info.get("lima_info")
        files = None
        if lima is not None and "file_path" in lima:
            files = ImageFiles(str(lima["file_path"]), str(lima["data_path"]),
                               int(lima["frame_per_file"]), int(lima.get("file_offset", 0)),
                               str(lima.get("file_format", "hdf5")))
        if lima is not None or len(shape) == 2:
            kind = StreamKind.IMAGE
        else:
            kind = StreamKind.SCALAR if len(shape) == 0 else StreamKind.SPECTRUM
        return cls(stream.name, kind, dtype, shape, unit, display, files, info)
