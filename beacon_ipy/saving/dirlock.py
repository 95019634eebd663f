"""The output directory: checked writable, and locked so that one saver saves a session there.

``<dir>/.<session>.saver.lock`` is a file lock (``filelock``) held while the saver runs;
``<dir>/.<session>.saver.owner`` says who holds it (pid, host, start time), for the
message a second saver gives.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time

import filelock

from beacon_ipy.saving.errors import DirectoryNotWritableError, SaverAlreadyRunningError
from beacon_ipy.saving.layout import SaveLayout


def check_directory(layout: SaveLayout) -> None:
    """Create the session's scan directory and prove it writable, or raise
    :class:`DirectoryNotWritableError` saying what to do."""
    probe = layout.scans_dir / f".write-test-{os.getpid()}-{id(layout)}"
    try:
        layout.scans_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise DirectoryNotWritableError(
            f"cannot save session {layout.session!r} into {layout.directory}: "
            f"{exc.strerror or exc} ({exc.filename or layout.scans_dir}). Choose a "
            f"directory you can write to, or fix its permissions.") from exc


def take_lock(layout: SaveLayout) -> filelock.BaseFileLock:
    """The directory's saver lock for this session, or :class:`SaverAlreadyRunningError`
    naming the saver that has it."""
    lock = filelock.FileLock(str(layout.lock_file), timeout=0)
    try:
        lock.acquire()
    except filelock.Timeout:
        owner = ""
        with contextlib.suppress(OSError, ValueError):
            info = json.loads(layout.owner_file.read_text())
            owner = (f" (pid {info.get('pid')} on {info.get('host')}, since "
                     f"{info.get('since')})")
        raise SaverAlreadyRunningError(
            f"session {layout.session!r} is already being saved into "
            f"{layout.directory} by another saver{owner}. Stop that one first, or save "
            f"into another directory.") from None
    with contextlib.suppress(OSError):
        layout.owner_file.write_text(json.dumps({
            "pid": os.getpid(), "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%d %H:%M:%S")}))
    return lock


def release_lock(layout: SaveLayout, lock: filelock.BaseFileLock) -> None:
    with contextlib.suppress(OSError):
        layout.owner_file.unlink()
    lock.release()
