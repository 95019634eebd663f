"""Saver errors, and plain-language descriptions of the OS errors that saving meets.

Every message says what went wrong, what happens to the data (it stays in Redis, held,
until it is saved) and what to do about it.
"""

from __future__ import annotations

import errno
import re


class SaverError(Exception):
    """Base class of the saver's errors."""


class SaverAlreadyRunningError(SaverError):
    """Another saver already saves this session into this directory."""


class DirectoryNotWritableError(SaverError, PermissionError):
    """The output directory cannot be created or written."""


class ScanSaveError(SaverError):
    """One scan could not be written (this time). ``retry`` says whether trying again may help."""

    def __init__(self, message: str, *, retry: bool = True):
        super().__init__(message)
        self.retry = retry


_ERRNO_IN_TEXT = re.compile(r"errno = (\d+)")


def os_errno(exc: BaseException) -> int | None:
    """The errno behind ``exc`` (h5py puts it in the text of its OSError as well)."""
    if isinstance(exc, OSError) and exc.errno:
        return exc.errno
    found = _ERRNO_IN_TEXT.search(str(exc))
    return int(found.group(1)) if found else None


def is_lock_error(exc: BaseException) -> bool:
    """True if HDF5 refused to open a file because another program holds a lock on it."""
    text = str(exc).lower()
    return "unable to lock file" in text or (
        os_errno(exc) in (errno.EAGAIN, errno.EWOULDBLOCK) and "lock" in text)


def describe(exc: BaseException, path: object, action: str) -> str:
    """One sentence on what failed while ``action`` on ``path``, and what to do."""
    code = os_errno(exc)
    if is_lock_error(exc):
        return (f"cannot {action} {path}: the file is locked by another program (HDF5 file "
                f"locking; a reader or writer has it open). Close it there; saving retries.")
    if code == errno.ENOSPC or code == errno.EDQUOT:
        return (f"disk full while trying to {action} {path} (no space left on the device or "
                f"quota exceeded). Free some space; the scan's data stays in Redis and saving "
                f"retries.")
    if code == errno.EFBIG:
        return (f"file too large while trying to {action} {path} (a file size limit, e.g. "
                f"ulimit -f, was reached). Raise the limit; saving retries.")
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return (f"permission denied: cannot {action} {path} ({exc.__class__.__name__}: "
                f"{_short(exc)}). Fix the permissions or choose another directory; saving "
                f"retries.")
    return f"cannot {action} {path}: {exc.__class__.__name__}: {_short(exc)}"


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 300 else text[:297] + "..."
