"""One background saver per process, as plain functions (what ``%savescans`` calls).

::

    from beacon_ipy.saving.background import start_saving, stop_saving, current_saver
    start_saving("demo", "~/data")      # a SessionSaver in this process's greenlets
    current_saver().status()            # per-scan progress and errors
    stop_saving()                       # scans that ended are finished first

Why a module-level saver: a notebook (or any long-lived process) saves one session at a
time in the background and must find that saver again from a later call (to show its
status or stop it) without keeping a variable around. Nothing here depends on Jupyter.
"""

from __future__ import annotations

import os
from pathlib import Path

from beacon_ipy.saving.errors import SaverError
from beacon_ipy.saving.saver import SessionSaver

#: Saver states after which a saver does nothing more (it stopped or failed by itself).
ENDED_STATES = ("stopped", "failed")

_current: dict[str, SessionSaver] = {}  # session name -> the saver (one entry at most)


class SavingAlreadyStartedError(SaverError):
    """:func:`start_saving` while a saver started by it is still running."""


def saver_state(saver: SessionSaver) -> str:
    """The saver's state (``running``, ``stopping``, ``stopped``, ``failed``...); a saver
    whose status cannot be read counts as ``failed``."""
    try:
        return str(getattr(saver.status(), "state", ""))
    except Exception:  # noqa: BLE001 - a broken status is not a running saver
        return "failed"


def current_saver() -> SessionSaver | None:
    """The saver :func:`start_saving` started, until :func:`stop_saving` (it may have
    ended by itself since: see :func:`saver_state`)."""
    return next(iter(_current.values()), None)


def current_session() -> str | None:
    """The session :func:`current_saver` saves, or None."""
    return next(iter(_current), None)


def forget_ended() -> bool:
    """Forget the current saver if it stopped or failed by itself; True if it did."""
    saver = current_saver()
    if saver is not None and saver_state(saver) in ENDED_STATES:
        _current.clear()
        return True
    return False


def start_saving(session: str, directory: str | os.PathLike[str],
                 compression: str | None = None) -> SessionSaver:
    """Start saving ``session``'s scans to NeXus files in ``directory`` (``~`` expanded),
    in this process's background greenlets; returns the started
    :class:`~beacon_ipy.saving.SessionSaver`. ``compression``: ``"gzip"`` or ``"lzf"``
    for smaller files (:data:`~beacon_ipy.saving.saver.COMPRESSIONS`).

    One saver per process: raises :class:`SavingAlreadyStartedError` if one is running
    (stop it first); a saver that ended by itself is replaced. Errors of the saver
    (directory not writable, another saver on the directory, Redis unreachable) are
    raised as they are.
    """
    forget_ended()
    running = current_session()
    if running is not None:
        raise SavingAlreadyStartedError(
            f"already saving session {running!r}; stop it first (stop_saving(), or "
            f"%savescans --stop)")
    saver = SessionSaver(session, Path(directory).expanduser(), compression=compression)
    saver.start()
    _current[session] = saver
    return saver


def stop_saving(release_holds: bool = False) -> str | None:
    """Stop the saver :func:`start_saving` started (scans that ended are finished first);
    returns its session, or None if there was none. ``release_holds``: stop holding
    unsaved scans in Redis (they may then expire)."""
    saver, session = current_saver(), current_session()
    if saver is None:
        return None
    _current.clear()
    saver.stop(release_holds=release_holds)
    return session
