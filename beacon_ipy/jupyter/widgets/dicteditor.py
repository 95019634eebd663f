"""Editing values as text: Python literals, and :class:`DictEditor` for ``dict`` values."""

from __future__ import annotations

import ast
import html
from typing import Any

import ipywidgets as widgets
import traitlets

from beacon_ipy.jupyter.widgets.common import STYLE, error_html


def parse_literal(text: str, previous: Any = None) -> Any:
    """The value typed in a text field: a Python literal, or plain text for text values.

    Fields showing a ``str`` take what is typed as is (no quotes needed); others parse a
    Python literal (``3``, ``[1, 2]``, ``{'a': 1}``, ``None``). Raises ``ValueError``
    with what to type when the text is not a literal.
    """
    if isinstance(previous, str):
        return text
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise ValueError(
            f"{text!r} is not a Python literal: type a number, True/False, None, a quoted "
            f"'string', or a list/tuple/dict of those"
        ) from None


def format_literal(value: Any) -> str:
    """How :func:`parse_literal` fields show ``value`` (``str`` values unquoted)."""
    return value if isinstance(value, str) else repr(value)


# -----------------------------------------------------------------------------------------
# A dict editor


class DictEditor(widgets.VBox):
    """An editor of a ``dict`` value: one text field per key.

    ``value`` is a traitlets ``Dict``: assigning it updates the fields; editing a field
    (Enter or leaving it) parses it with :func:`parse_literal` and assigns a new dict with
    that key changed, so observers of ``value`` see whole-dict changes. Keys are fixed by
    the value (set a dict with other keys to add or remove fields).
    """

    value = traitlets.Dict()
    description = traitlets.Unicode("")
    disabled = traitlets.Bool(False)

    def __init__(self, value: dict | None = None, description: str = "", **kwargs: Any):
        self._title = widgets.HTML()
        self._error = widgets.HTML()
        self._fields: dict[Any, widgets.Text] = {}
        self._updating = False
        super().__init__(**kwargs)
        self.observe(self._on_value, "value")
        self.observe(self._on_description, "description")
        self.observe(self._on_disabled, "disabled")
        self.description = description
        self.value = dict(value or {})
        self._rebuild()

    def _on_description(self, change: Any) -> None:
        self._title.value = f"<b>{html.escape(change.new)}</b>" if change.new else ""

    def _on_disabled(self, change: Any) -> None:
        for field in self._fields.values():
            field.disabled = change.new

    def _on_value(self, change: Any) -> None:
        if list(change.new) != list(self._fields):
            self._rebuild()
            return
        self._updating = True
        try:
            for key, field in self._fields.items():
                field.value = format_literal(change.new[key])
        finally:
            self._updating = False

    def _rebuild(self) -> None:
        for field in self._fields.values():
            field.close()
        self._fields = {}
        for key, item in self.value.items():
            field = widgets.Text(value=format_literal(item), description=str(key),
                                 continuous_update=False, disabled=self.disabled, style=STYLE)
            field.observe(lambda change, k=key: self._on_field(k, change), "value")
            self._fields[key] = field
        self.children = [self._title, *self._fields.values(), self._error]

    def _on_field(self, key: Any, change: Any) -> None:
        if self._updating:
            return
        try:
            parsed = parse_literal(change.new, self.value.get(key))
        except ValueError as exc:
            self._error.value = error_html(f"{key}: {exc}")
            return
        self._error.value = ""
        new = dict(self.value)
        new[key] = parsed
        self.value = new

    def close(self) -> None:
        for field in self._fields.values():
            field.close()
        self._title.close()
        self._error.close()
        super().close()

