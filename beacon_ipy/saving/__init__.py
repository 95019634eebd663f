"""Save a session's scans to NeXus HDF5 files as they arrive: crash-safe, off the hub.

::

    from beacon_ipy.saving import SessionSaver
    saver = SessionSaver("demo", "/data/demo").start()   # background greenlets
    saver.status()                                       # per-scan progress and errors
    saver.stop()

or ``beacon-ipy save --session demo --dir /data/demo`` in a terminal. File layout,
write protocol and what happens on faults: docs/saving.md.
"""

from beacon_ipy.saving.errors import (
    DirectoryNotWritableError,
    SaverAlreadyRunningError,
    SaverError,
    ScanSaveError,
)
from beacon_ipy.saving.layout import SaveLayout
from beacon_ipy.saving.saver import SessionSaver
from beacon_ipy.saving.status import SaverStatus, ScanStatus

__all__ = [
    "DirectoryNotWritableError",
    "SaveLayout",
    "SaverAlreadyRunningError",
    "SaverError",
    "SaverStatus",
    "ScanSaveError",
    "ScanStatus",
    "SessionSaver",
]
