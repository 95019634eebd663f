"""Small helpers the channel widgets and the magics share: reprs, error lines, tables."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import Any

#: Style of every labelled widget: the description takes the room it needs.
STYLE = {"description_width": "initial"}
#: Longest repr shown in a widget or a table cell.
REPR_MAX = 200


def short_repr(value: Any, limit: int = REPR_MAX) -> str:
    """``repr(value)``, cut to ``limit`` characters (a widget must stay readable)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def with_text(bundle: dict | None, text: str) -> dict | None:
    """A widget's mime bundle with a readable ``text/plain`` (what non-widget front ends,
    nbclient outputs and terminals show) instead of the widget's own repr."""
    if bundle:
        bundle = dict(bundle)
        bundle["text/plain"] = text
    return bundle


def error_html(message: str) -> str:
    """``message`` as a red HTML line (empty if there is no message)."""
    return f'<span style="color:#b00020">{html.escape(message)}</span>' if message else ""


def html_table(rows: Iterable[Sequence[Any]], header: Sequence[str]) -> str:
    """A small HTML table (cells escaped)."""
    head = "".join(f"<th style='text-align:left'>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td style='text-align:left'>{html.escape(str(c))}</td>"
                         for c in row) + "</tr>"
        for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
