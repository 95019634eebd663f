"""How a channel value is shown in a widget and read back, and the default widget.

An adapter sits between a :class:`~beacon_ipy.jupyter.widgets.binding.Binding` and its
widget: ``show(value)`` puts a channel value in the widget (widening a slider's range,
formatting a literal...), ``read(widget_value)`` turns what the widget holds into the
value to set on the channel.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import ipywidgets as widgets

from beacon_ipy.jupyter.widgets.common import STYLE, short_repr
from beacon_ipy.jupyter.widgets.dicteditor import DictEditor, format_literal, parse_literal


class Adapter:
    """Default: the widget's ``value`` trait holds the channel value itself."""

    def __init__(self, widget: widgets.Widget):
        self.widget = widget

    def show(self, value: Any) -> None:
        self.widget.value = value

    def read(self, widget_value: Any) -> Any:
        return widget_value


class NumberAdapter(Adapter):
    """Numbers; sliders and bounded boxes widen their range to show any value."""

    def __init__(self, widget: widgets.Widget, integer: bool):
        super().__init__(widget)
        self.integer = integer

    def show(self, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{short_repr(value)} is not a number; this widget shows numbers")
        if self.integer:
            if value != int(value):
                raise TypeError(f"{value!r} is not an integer; bind a FloatSlider or "
                                f"FloatText to show it")
            value = int(value)
        else:
            value = float(value)
        widget = self.widget
        if hasattr(widget, "min") and hasattr(widget, "max"):
            with widget.hold_sync():
                if value < widget.min:
                    widget.min = value
                if value > widget.max:
                    widget.max = value
                widget.value = value
        else:
            widget.value = value


class LiteralAdapter(Adapter):
    """Any value in a text field (repr in, literal out; ``str`` values as plain text)."""

    def __init__(self, widget: widgets.Widget):
        super().__init__(widget)
        self.shown: Any = None

    def show(self, value: Any) -> None:
        self.shown = value
        self.widget.value = format_literal(value)

    def read(self, widget_value: Any) -> Any:
        return parse_literal(widget_value, self.shown)


class ChoiceAdapter(Adapter):
    """A Dropdown; a value that is not among the choices is added to them."""

    def show(self, value: Any) -> None:
        widget = self.widget
        pairs = option_pairs(widget.options)
        if value not in tuple(v for _label, v in pairs):
            widget.options = (*pairs, (str(value), value))
        widget.value = value


def option_pairs(options: Any) -> list[tuple[str, Any]]:
    """A Dropdown's ``options`` as (label, value) pairs (plain values are their own label,
    as ipywidgets shows them)."""
    if isinstance(options, Mapping):
        return [(str(label), value) for label, value in options.items()]
    return [(o[0], o[1]) if isinstance(o, tuple) and len(o) == 2 and isinstance(o[0], str)
            else (str(o), o) for o in options]


def is_number(value: Any) -> bool:
    """A real number that is not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def default_widget(value: Any, *, description: str = "",
                   bounds: tuple[float, float] | None = None,
                   choices: Sequence[Any] | None = None,
                   step: float | None = None) -> tuple[widgets.Widget, Adapter]:
    """The widget :func:`bind` picks for ``value``, and how to put values in and out of it.

    ``choices`` → Dropdown; ``bool`` → Checkbox; a number with ``bounds`` → slider
    (Int/Float), without → a number box; ``str`` → Text; ``dict`` → :class:`DictEditor`;
    anything else → a text field holding a Python literal.
    """
    common: dict[str, Any] = {"description": description, "style": STYLE}
    if choices is not None:
        choices = list(choices)
        if not choices:
            raise ValueError("choices must not be empty")
        widget = widgets.Dropdown(options=choices, **common)
        return widget, ChoiceAdapter(widget)
    if isinstance(value, bool):
        widget = widgets.Checkbox(value=value, indent=False, **common)
        return widget, Adapter(widget)
    if is_number(value) or bounds is not None:
        numbers_seen = [v for v in (value, *(bounds or ())) if is_number(v)]
        integer = all(isinstance(v, numbers.Integral) for v in numbers_seen) and (
            step is None or float(step).is_integer())
        if bounds is not None:
            lo, hi = bounds
            if not lo < hi:
                raise ValueError(f"bounds must be (low, high) with low < high, not {bounds!r}")
            cls = widgets.IntSlider if integer else widgets.FloatSlider
            kwargs = {"min": lo, "max": hi, "continuous_update": True, **common}
            if step is not None:
                kwargs["step"] = step
            elif not integer:
                kwargs["step"] = (hi - lo) / 1000
            kwargs["readout_format"] = "d" if integer else fixed_format(kwargs["step"])
            widget = cls(**kwargs)
        else:
            cls = widgets.IntText if integer else widgets.FloatText
            widget = cls(**common) if step is None else cls(step=step, **common)
        return widget, NumberAdapter(widget, integer)
    if isinstance(value, str):
        widget = widgets.Text(continuous_update=False, **common)
        return widget, Adapter(widget)
    if isinstance(value, dict):
        widget = DictEditor(description=description)
        return widget, Adapter(widget)
    widget = widgets.Text(continuous_update=False, **common)
    return widget, LiteralAdapter(widget)


def fixed_format(step: float, max_decimals: int = 8) -> str:
    """A slider readout format with a fixed number of decimals, enough to show ``step``
    exactly (``0.001`` -> ``".3f"``, ``0.25`` -> ``".2f"``).

    Why: a significant-digits format (``".4g"``) makes the readout change width as the
    value moves (``0.1000``, ``0.000``, ``0.05000``); fixed decimals keep it steady.
    """
    step = abs(float(step))
    for decimals in range(max_decimals + 1):
        if step > 0 and abs(round(step, decimals) - step) <= step * 1e-9:
            return f".{decimals}f"
    return f".{max_decimals}f"


def adapter_for(widget: widgets.Widget) -> Adapter:
    """How to drive a widget given by the user, from the type of its current value."""
    if isinstance(widget, widgets.Dropdown):
        return ChoiceAdapter(widget)
    current = getattr(widget, "value", None)
    if isinstance(current, bool) or isinstance(widget, DictEditor):
        return Adapter(widget)
    if isinstance(current, int):
        return NumberAdapter(widget, integer=True)
    if isinstance(current, float):
        return NumberAdapter(widget, integer=False)
    return Adapter(widget)
