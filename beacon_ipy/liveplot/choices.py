"""The user's plot choices, remembered per session for the next scans (and the next kernel).

A live plot asks :data:`CHOICES` for its session's :class:`~.selection.Choice` at start
and stores every change (widget or ``plot.select(...)``), so the next scans of the
session, a re-run cell or another live plot of the same session show the same x, y,
log scale and monitor. Choices are also written to a small JSON file,
``<user config dir>/beacon-ipy/liveplot.json`` (``$BEACON_IPY_CONFIG_DIR/liveplot.json``
when that is set), so that a new kernel starts with them: ``{session: choice}``. The file
is re-read when another process changed it; a file that cannot be read or written is
logged and ignored (choices then live in memory only).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

from beacon_ipy.liveplot.selection import Choice

log = logging.getLogger(__name__)

ENV_CONFIG_DIR = "BEACON_IPY_CONFIG_DIR"
FILE_NAME = "liveplot.json"


def choices_path() -> Path:
    """Where choices persist: ``$BEACON_IPY_CONFIG_DIR`` or the user config directory."""
    configured = os.environ.get(ENV_CONFIG_DIR)
    if configured:
        return Path(configured) / FILE_NAME
    import platformdirs

    return platformdirs.user_config_path("beacon-ipy", appauthor=False) / FILE_NAME


class ChoiceStore:
    """Choices by session, in memory and (``persist``) in a JSON file."""

    def __init__(self, path: Path | None = None, persist: bool = True):
        self._path = path
        self.persist = persist
        self._memory: dict[str, Choice] = {}
        self._seen: tuple | None = None  # (inode, mtime, size) of the file last read
        self._lock = threading.Lock()

    @property
    def path(self) -> Path:
        return self._path if self._path is not None else choices_path()

    def get(self, session: str) -> Choice:
        """The session's last choice (the default Choice if none)."""
        with self._lock:
            self._reload()
            return self._memory.get(session, Choice())

    def set(self, session: str, choice: Choice) -> None:
        """Remember ``choice`` for ``session`` (and write the file)."""
        with self._lock:
            self._reload()
            self._memory[session] = choice
            self._write()

    def forget(self, session: str) -> None:
        with self._lock:
            self._reload()
            if self._memory.pop(session, None) is not None:
                self._write()

    def _reload(self) -> None:
        if not self.persist:
            return
        path = self.path
        try:
            st = path.stat()
        except OSError:
            return
        # every write replaces the file (a new inode): a change is seen whatever the
        # file system's time resolution
        mtime = (st.st_ino, st.st_mtime_ns, st.st_size)
        if mtime == self._seen:
            return
        try:
            data = json.loads(path.read_text())
            loaded = {str(k): Choice.from_dict(v) for k, v in data.items()}
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            log.warning("live plot choices: ignoring %s (%s)", path, exc)
            self._seen = mtime
            return
        self._memory = loaded  # the file is the truth (another process may have forgotten)
        self._seen = mtime

    def _write(self) -> None:
        if not self.persist:
            return
        path = self.path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps({k: v.as_dict() for k, v in self._memory.items()},
                                      indent=1, sort_keys=True))
            os.replace(tmp, path)
            st = path.stat()
            self._seen = (st.st_ino, st.st_mtime_ns, st.st_size)
        except OSError as exc:
            log.warning("live plot choices: cannot write %s (%s); kept in memory only",
                        path, exc)


#: The process-wide store every live plot uses.
CHOICES = ChoiceStore()
