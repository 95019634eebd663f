"""Editing values as text: Python literals, and :class:`DictEditor` for ``dict`` values."""

from __future__ import annotations

import ast
import html
from typing import Any

import ipywidgets as widgets
import traitlets

from beacon_ipy.jupyter import mainhub
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
    """An editor of a ``dict`` value: one text field per key, keys can be added and removed.

    ``value`` is a traitlets ``Dict``: assigning it updates the fields (rebuilt when the
    keys change); editing a field (Enter or leaving it) parses it with
    :func:`parse_literal` and assigns a new dict with that key changed, so observers of
    ``value`` see whole-dict changes. Each field has a remove button (a new dict without
    that key); the last row adds a key (its name is taken as text, its value parsed as a
    Python literal). Bound to a channel, every one of these sets the channel for every
    process, and a dict with other keys set by any process rebuilds the fields.
    Front-end events are handled on the main gevent hub (see
    :mod:`beacon_ipy.jupyter.mainhub`).
    """

    value = traitlets.Dict()
    description = traitlets.Unicode("")
    disabled = traitlets.Bool(False)

    def __init__(self, value: dict | None = None, description: str = "", **kwargs: Any):
        self._title = widgets.HTML()
        self._error = widgets.HTML()
        self._fields: dict[Any, widgets.Text] = {}
        self._rows: dict[Any, widgets.HBox] = {}  # key -> (field, remove button)
        self.new_key = widgets.Text(placeholder="new key", layout={"width": "10em"})
        self.new_value = widgets.Text(placeholder="value (a Python literal)",
                                      layout={"width": "14em"})
        self.add_button = widgets.Button(description="add", icon="plus",
                                         tooltip="add this key to the dict",
                                         layout={"width": "auto"})
        self.add_button.on_click(lambda _button: self.add_typed_key())
        for w, css in ((self.new_key, "beacon-dict-new-key"),
                       (self.new_value, "beacon-dict-new-value"),
                       (self.add_button, "beacon-dict-add")):
            w.add_class(css)
        self._adder = widgets.HBox([self.new_key, self.new_value, self.add_button])
        self._updating = False
        super().__init__(**kwargs)
        self.add_class("beacon-dict-editor")
        self.observe(self._on_value, "value")
        self.observe(self._on_description, "description")
        self.observe(self._on_disabled, "disabled")
        self.description = description
        self.value = dict(value or {})
        self._sync_rows()

    @property
    def fields(self) -> dict[Any, widgets.Text]:
        """The text field of each key, in the dict's order."""
        return {k: self._fields[k] for k in self.value if k in self._fields}

    @property
    def error(self) -> str:
        """The error line shown (HTML; empty when the last edit was fine)."""
        return self._error.value

    def _on_description(self, change: Any) -> None:
        self._title.value = f"<b>{html.escape(change.new)}</b>" if change.new else ""

    def _on_disabled(self, change: Any) -> None:
        for row in self._rows.values():
            for child in row.children:
                child.disabled = change.new
        for w in (self.new_key, self.new_value, self.add_button):
            w.disabled = change.new

    def _on_value(self, change: Any) -> None:
        self._sync_rows()

    def _sync_rows(self) -> None:
        """Rows for the keys of ``value``, in its order: rows of keys that stay are kept
        (only their text is updated), so a button the user is about to click is not
        replaced under the pointer; rows of removed keys are closed, new keys get one."""
        value = self.value
        for key in [k for k in self._rows if k not in value]:
            row = self._rows.pop(key)
            del self._fields[key]
            for child in row.children:
                child.close()
            row.close()
        self._updating = True
        try:
            for key, item in value.items():
                text = format_literal(item)
                field = self._fields.get(key)
                if field is None:
                    self._rows[key] = self._new_row(key, text)
                elif field.value != text:
                    field.value = text
        finally:
            self._updating = False
        children = [self._title, *(self._rows[k] for k in value), self._adder, self._error]
        if list(self.children) != children:
            self.children = children

    def _new_row(self, key: Any, text: str) -> widgets.HBox:
        field = widgets.Text(value=text, description=str(key), continuous_update=False,
                             disabled=self.disabled, style=STYLE)
        field.observe(lambda change, k=key: self._on_field(k, change), "value")
        remove = widgets.Button(icon="times", tooltip=f"remove {key!r} from the dict",
                                disabled=self.disabled, layout={"width": "2.5em"})
        remove.add_class("beacon-dict-remove")
        remove.on_click(lambda _button, k=key: self.remove_key(k))
        self._fields[key] = field
        return widgets.HBox([field, remove])

    @mainhub.on_main_hub
    def _on_field(self, key: Any, change: Any) -> None:
        if self._updating or key not in self.value:
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

    @mainhub.on_main_hub
    def remove_key(self, key: Any) -> None:
        """A new dict without ``key`` (what a field's remove button does)."""
        if key in self.value:
            self._error.value = ""
            self.value = {k: v for k, v in self.value.items() if k != key}

    @mainhub.on_main_hub
    def add_typed_key(self) -> None:
        """Add the key typed in the last row, with its value (what *add* does)."""
        key = self.new_key.value.strip()
        if not key:
            self._error.value = error_html("type the name of the key to add")
            return
        if key in self.value:
            self._error.value = error_html(f"{key!r} is already there: edit its field")
            return
        try:
            item = parse_literal(self.new_value.value)
        except ValueError as exc:
            self._error.value = error_html(f"{key}: {exc}")
            return
        self._error.value = ""
        self.new_key.value = self.new_value.value = ""
        self.value = {**self.value, key: item}

    def close(self) -> None:
        for row in self._rows.values():
            for child in row.children:
                child.close()
            row.close()
        for w in (self._title, self._error, self.new_key, self.new_value, self.add_button,
                  self._adder):
            w.close()
        super().close()
