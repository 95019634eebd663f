"""A simulated 2D detector that saves frames into its own HDF5 files, as a Lima detector does.

Frames go to ``<directory>/<prefix>_<nnnn>.h5`` at ``/entry_0000/measurement/data``,
``frames_per_file`` per file. Files are written in SWMR mode and flushed after every
frame, so other processes can read frames while the scan runs; only flushed frames are
published.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

DATASET_PATH = "/entry_0000/measurement/data"


class SimDetector2D:
    """Writes frames to HDF5 files; :meth:`save` returns where the frame went."""

    def __init__(self, name: str, shape: tuple[int, int] = (64, 80), dtype: str = "uint16",
                 frames_per_file: int = 100):
        self.name = name
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.frames_per_file = int(frames_per_file)
        self._file = None
        self._dset = None
        self._directory: Path | None = None
        self._prefix = name
        self._file_nb = 0
        self.saved = 0

    def prepare(self, directory: str | Path, prefix: str | None = None) -> None:
        """Start a new acquisition writing into ``directory``."""
        self.close()
        self._directory = Path(directory)
        self._directory.mkdir(parents=True, exist_ok=True)
        self._prefix = prefix or self.name
        self._file_nb = 0
        self.saved = 0

    def _open_next(self) -> None:
        import h5py

        assert self._directory is not None, "call prepare() first"
        path = self._directory / f"{self._prefix}_{self._file_nb:04d}.h5"
        self._file_nb += 1
        fh = h5py.File(path, "w", libver="latest")
        entry = fh.create_group("entry_0000")
        entry.attrs["NX_class"] = "NXentry"
        meas = entry.create_group("measurement")
        meas.attrs["NX_class"] = "NXcollection"
        self._dset = meas.create_dataset(
            "data", shape=(0, *self.shape), maxshape=(None, *self.shape),
            chunks=(1, *self.shape), dtype=self.dtype)
        self._dset.attrs["interpretation"] = "image"
        fh.swmr_mode = True
        self._file = fh

    def save(self, frame: np.ndarray) -> tuple[str, str, int]:
        """Append ``frame``, flush it, return ``(file, dataset_path, index_in_file)``."""
        if self._file is None or len(self._dset) >= self.frames_per_file:
            self.close()
            self._open_next()
        dset = self._dset
        index = len(dset)
        dset.resize(index + 1, axis=0)
        dset[index] = frame
        dset.flush()
        self.saved += 1
        return str(Path(self._file.filename).resolve()), DATASET_PATH, index

    def close(self) -> None:
        """Close the current file (end of acquisition)."""
        if self._file is not None:
            self._file.close()
        self._file = None
        self._dset = None
