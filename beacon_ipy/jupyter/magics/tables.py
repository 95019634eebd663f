"""What ``%channel`` and ``%savescans --status`` show: text tables, HTML in Jupyter."""

from __future__ import annotations

import html
import time
from typing import Any

from beacon_ipy.channels import BaseChannel, Channel, EventChannel
from beacon_ipy.jupyter.widgets import error_html, html_table, short_repr

#: Widest value shown in the channel table.
VALUE_WIDTH = 60


class ChannelTable:
    """This kernel's channels and their values: text table, HTML table in Jupyter."""

    HEADER = ("name", "kind", "value", "writer", "age")

    def __init__(self, channels: list[BaseChannel]):
        self.channels = sorted(channels, key=lambda c: c.name)
        now = time.time()
        self.rows = [self._row(c, now) for c in self.channels]

    @staticmethod
    def _row(channel: BaseChannel, now: float) -> tuple[str, ...]:
        if isinstance(channel, EventChannel):
            return (channel.name, "EventChannel", "(events)", "", "")
        assert isinstance(channel, Channel)
        if not channel.has_value:
            return (channel.name, "Channel", "<waiting for value>", "", "")
        value = short_repr(channel.value, VALUE_WIDTH)
        stamp = channel.timestamp or 0.0
        if stamp == 0.0:
            return (channel.name, "Channel", value, "(default)", "")
        return (channel.name, "Channel", value, channel.writer_id or "",
                age(now - stamp))

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        if not self.rows:
            return "No channels in this kernel yet (%channel NAME opens one)."
        table = [self.HEADER, *self.rows]
        widths = [max(len(r[i]) for r in table) for i in range(len(self.HEADER))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
                 for r in table]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        if not self.rows:
            return f"<i>{html.escape(repr(self))}</i>"
        return html_table(self.rows, self.HEADER)


def age(seconds: float) -> str:
    """``seconds`` as a short readable age (``3.2 s``, ``4.0 min``, ``1.5 h``)."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


class SaverStatusView:
    """A snapshot of the saver's ``status()``: per-scan progress, files and errors.

    Text repr for ``%savescans --status``, HTML for the live panel. Reads the fields of
    :class:`beacon_ipy.saving.SaverStatus` by name, so it degrades to ``str(status)``.
    """

    HEADER = ("scan", "title", "state", "points", "file", "error")

    def __init__(self, saver: Any):
        self.status = saver.status()

    def _summary(self) -> str:
        s = self.status
        text = (f"Saving session {getattr(s, 'session', '?')!r} to "
                f"{getattr(s, 'directory', '?')} ({getattr(s, 'state', '?')}")
        if not getattr(s, "redis_connected", True):
            text += ", Redis unreachable: retrying"
        return text + ")"

    def _rows(self) -> list[tuple[str, ...]]:
        rows = []
        for nb, scan in sorted(getattr(self.status, "scans", {}).items()):
            npoints = getattr(scan, "npoints", None)
            points = f"{scan.points}/{npoints}" if npoints else str(scan.points)
            rows.append((str(nb), str(scan.title), str(scan.state), points, str(scan.file),
                         str(scan.error or "")))
        return rows

    def __repr__(self) -> str:
        if not hasattr(self.status, "scans"):
            return str(self.status)
        lines = [self._summary()]
        rows = self._rows()
        if rows:
            table = [self.HEADER, *rows]
            widths = [max(len(r[i]) for r in table) for i in range(len(self.HEADER))]
            lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                      for r in table]
        else:
            lines.append("no scan yet")
        lines += [f"error: {e}" for e in getattr(self.status, "errors", [])[-5:]]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        if not hasattr(self.status, "scans"):
            return f"<pre>{html.escape(str(self.status))}</pre>"
        parts = [f"<b>{html.escape(self._summary())}</b>"]
        rows = self._rows()
        parts.append(html_table(rows, self.HEADER) if rows else "<i>no scan yet</i>")
        for error in getattr(self.status, "errors", [])[-5:]:
            parts.append(error_html(error))
        return "<br>".join(parts)
