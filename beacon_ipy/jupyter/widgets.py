"""ipywidgets bound to Beacon channels: two-way, echo-free, throttled.

- :func:`bind` ties a :class:`~beacon_ipy.channels.Channel` to a widget (one chosen from
  the value when none is given): a value set by any process shows in the widget, and
  moving the widget sets the channel for every process.
- :func:`event_log` shows the events received on an
  :class:`~beacon_ipy.channels.EventChannel` (the last N, newest first).
- :func:`cache_editor` is a table of an object's ``Cache`` values, each editable, with a
  reset button calling ``clear_cache``.
- :func:`live_widget` is what a channel shown as a cell's result renders as (the
  ``%load_ext beacon_ipy`` extension registers it as a display formatter).

Why throttled: a comm message costs about 0.12 ms of kernel time and the browser must
render each one, so a channel changing at 1 kHz would flood both. Updates to the front
end go through a :class:`~beacon_ipy.jupyter.throttle.Throttle` (at most one per
``interval``, 50 ms by default); the widget always ends on the latest value.

Why echo-free: a value applied to the widget because the channel changed must not be
sent back to the channel (it would bounce between processes, and a slider clamping an
out-of-range value would overwrite the channel). Changes made while applying a channel
value are ignored; only changes coming from the front end (or user code) set the channel.

Everything works without a kernel too (widgets then have no front end), which is how the
binding logic is unit-tested; greenlets run whenever the process yields to gevent.
"""

from __future__ import annotations

import ast
import html
import logging
import numbers
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import gevent
import ipywidgets as widgets
import traitlets

from beacon_ipy.channels import BaseChannel, Channel, EventChannel, cached_channels, clear_cache
from beacon_ipy.jupyter.registry import REGISTRY
from beacon_ipy.jupyter.throttle import DEFAULT_INTERVAL, Throttle

log = logging.getLogger("beacon_ipy.jupyter")

_STYLE = {"description_width": "initial"}
_REPR_MAX = 200


def _short_repr(value: Any, limit: int = _REPR_MAX) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _with_text(bundle: dict | None, text: str) -> dict | None:
    """A widget's mime bundle with a readable ``text/plain`` (what non-widget front ends,
    nbclient outputs and terminals show) instead of the widget's own repr."""
    if bundle:
        bundle = dict(bundle)
        bundle["text/plain"] = text
    return bundle


def _error_html(message: str) -> str:
    return f'<span style="color:#b00020">{html.escape(message)}</span>' if message else ""


# -----------------------------------------------------------------------------------------
# Text <-> value conversions shared by the literal editors


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
                                 continuous_update=False, disabled=self.disabled, style=_STYLE)
            field.observe(lambda change, k=key: self._on_field(k, change), "value")
            self._fields[key] = field
        self.children = [self._title, *self._fields.values(), self._error]

    def _on_field(self, key: Any, change: Any) -> None:
        if self._updating:
            return
        try:
            parsed = parse_literal(change.new, self.value.get(key))
        except ValueError as exc:
            self._error.value = _error_html(f"{key}: {exc}")
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


# -----------------------------------------------------------------------------------------
# Adapters: how a channel value is shown in a widget, and read back


class _Adapter:
    """Default: the widget's ``value`` trait holds the channel value itself."""

    def __init__(self, widget: widgets.Widget):
        self.widget = widget

    def show(self, value: Any) -> None:
        self.widget.value = value

    def read(self, widget_value: Any) -> Any:
        return widget_value


class _NumberAdapter(_Adapter):
    """Numbers; sliders and bounded boxes widen their range to show any value."""

    def __init__(self, widget: widgets.Widget, integer: bool):
        super().__init__(widget)
        self.integer = integer

    def show(self, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{_short_repr(value)} is not a number; this widget shows numbers")
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


class _LiteralAdapter(_Adapter):
    """Any value in a text field (repr in, literal out; ``str`` values as plain text)."""

    def __init__(self, widget: widgets.Widget):
        super().__init__(widget)
        self.shown: Any = None

    def show(self, value: Any) -> None:
        self.shown = value
        self.widget.value = format_literal(value)

    def read(self, widget_value: Any) -> Any:
        return parse_literal(widget_value, self.shown)


class _ChoiceAdapter(_Adapter):
    """A Dropdown; a value that is not among the choices is added to them."""

    def show(self, value: Any) -> None:
        widget = self.widget
        if value not in tuple(getattr(widget, "_options_values", ())):
            widget.options = (*widget._options_full, (str(value), value))
        widget.value = value


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def default_widget(value: Any, *, description: str = "",
                   bounds: tuple[float, float] | None = None,
                   choices: Sequence[Any] | None = None,
                   step: float | None = None) -> tuple[widgets.Widget, _Adapter]:
    """The widget :func:`bind` picks for ``value``, and how to put values in and out of it.

    ``choices`` → Dropdown; ``bool`` → Checkbox; a number with ``bounds`` → slider
    (Int/Float), without → a number box; ``str`` → Text; ``dict`` → :class:`DictEditor`;
    anything else → a text field holding a Python literal.
    """
    common: dict[str, Any] = {"description": description, "style": _STYLE}
    if choices is not None:
        choices = list(choices)
        if not choices:
            raise ValueError("choices must not be empty")
        widget = widgets.Dropdown(options=choices, **common)
        return widget, _ChoiceAdapter(widget)
    if isinstance(value, bool):
        widget = widgets.Checkbox(value=value, indent=False, **common)
        return widget, _Adapter(widget)
    if _is_number(value) or bounds is not None:
        numbers_seen = [v for v in (value, *(bounds or ())) if _is_number(v)]
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
            kwargs["readout_format"] = "d" if integer else ".4g"
            widget = cls(**kwargs)
        else:
            cls = widgets.IntText if integer else widgets.FloatText
            widget = cls(**common) if step is None else cls(step=step, **common)
        return widget, _NumberAdapter(widget, integer)
    if isinstance(value, str):
        widget = widgets.Text(continuous_update=False, **common)
        return widget, _Adapter(widget)
    if isinstance(value, dict):
        widget = DictEditor(description=description)
        return widget, _Adapter(widget)
    widget = widgets.Text(continuous_update=False, **common)
    return widget, _LiteralAdapter(widget)


def _adapter_for(widget: widgets.Widget) -> _Adapter:
    """How to drive a widget given by the user, from the type of its current value."""
    if isinstance(widget, widgets.Dropdown):
        return _ChoiceAdapter(widget)
    current = getattr(widget, "value", None)
    if isinstance(current, bool) or isinstance(widget, DictEditor):
        return _Adapter(widget)
    if isinstance(current, int):
        return _NumberAdapter(widget, integer=True)
    if isinstance(current, float):
        return _NumberAdapter(widget, integer=False)
    return _Adapter(widget)


# -----------------------------------------------------------------------------------------
# The binding


def _as_channel(channel: BaseChannel | str, cls: type[BaseChannel]) -> BaseChannel:
    if isinstance(channel, str):
        return REGISTRY.open_channel(cls, channel)
    if not isinstance(channel, cls):
        raise TypeError(f"expected a {cls.__name__} (or its name), not {channel!r}")
    return channel


class _LiveView:
    """What the live views share: registered with the extension (``%unload_ext`` closes
    them), closed once, and closed when the front end closes their widget."""

    _closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def _on_comm(self, change: Any) -> None:
        if change.new is None and not self._closed:
            self.close()

    def close(self) -> None:
        """Stop updating and close the widgets this view made."""
        if self._closed:
            return
        self._closed = True
        self._teardown()
        REGISTRY.discard(self)

    def _teardown(self) -> None:
        raise NotImplementedError


class Binding(_LiveView):
    """A live two-way link between a :class:`Channel` and a widget (see :func:`bind`).

    ``widget`` is the control; ``box`` is what displays (the control and an error line).
    Displaying the binding displays ``box``. ``close()`` unlinks (and closes the widget
    if the binding created it); closing the widget closes the binding.
    """

    def __init__(self, channel: Channel, widget: widgets.Widget, adapter: _Adapter, *,
                 interval: float = DEFAULT_INTERVAL, readonly: bool = False,
                 owns_widget: bool = False):
        self.channel = channel
        self.widget = widget
        self.readonly = readonly
        self._adapter = adapter
        self._owns_widget = owns_widget
        self._live_key: Any = None  # set when shared as a channel's live widget
        self._applying: Any = None  # the greenlet applying a channel value
        self._closed = False
        self.error = widgets.HTML()
        self.box = widgets.HBox([widget, self.error])
        self.throttle = Throttle(self._apply, interval, name=f"widget:{channel.name}")
        if readonly and hasattr(widget, "disabled"):
            widget.disabled = True
        self._apply()  # show the current value now (bind() made sure it is known)
        if not readonly:
            widget.observe(self._on_widget, "value")
        widget.observe(self._on_comm, "comm")
        throttle = self.throttle

        def on_channel(_value: Any) -> None:
            throttle()  # a plain function: the channel holds it strongly

        self._callback = on_channel
        channel.register_callback(on_channel)
        REGISTRY.add(self)

    def _apply(self) -> None:
        """Show the channel's current value in the widget (called through the throttle)."""
        if self._closed or not self.channel.has_value:
            return
        value = self.channel.value
        # Changes the widget makes while showing the value (in this greenlet) are not
        # sent back; a front-end change handled meanwhile by another greenlet still is.
        self._applying = gevent.getcurrent()
        try:
            self._adapter.show(value)
        except Exception as exc:  # noqa: BLE001 - shown to the user, the binding goes on
            self.error.value = _error_html(f"cannot show {_short_repr(value, 80)}: {exc}")
        else:
            self.error.value = ""
        finally:
            self._applying = None

    def _on_widget(self, change: Any) -> None:
        """The widget changed (front end or user code): set the channel for every process."""
        if self._closed or self._applying is gevent.getcurrent():
            return
        try:
            new = self._adapter.read(change.new)
            self.channel.value = new
        except Exception as exc:  # noqa: BLE001 - bad input: say so, keep the channel's value
            self.error.value = _error_html(str(exc))
            return
        self.error.value = ""

    def _teardown(self) -> None:
        """Unlink the widget from the channel; close the widget if the binding made it."""
        self.throttle.close()
        self.channel.unregister_callback(self._callback)
        try:
            self.widget.unobserve(self._on_widget, "value")
        except ValueError:
            pass
        try:
            self.widget.unobserve(self._on_comm, "comm")
        except ValueError:
            pass
        _forget_live(self)
        if self._owns_widget:
            self.widget.close()
        self.error.close()
        self.box.close()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return _with_text(self.box._repr_mimebundle_(**kwargs), repr(self.channel))

    def __repr__(self) -> str:
        state = "closed" if self._closed else "live"
        return f"<Binding {self.channel.name!r} <-> {type(self.widget).__name__} ({state})>"


def bind(channel: Channel | str, widget: widgets.Widget | None = None, *,
         bounds: tuple[float, float] | None = None, choices: Sequence[Any] | None = None,
         step: float | None = None, description: str | None = None,
         interval: float = DEFAULT_INTERVAL, readonly: bool = False) -> Binding:
    """Bind ``channel`` (a :class:`Channel` or its name) to ``widget``, both ways.

    Without ``widget``, one is chosen from the current value (see :func:`default_widget`):
    pass ``bounds=(low, high)`` for a slider, ``choices=[...]`` for a dropdown. A value
    set in any process shows in the widget within ``interval`` seconds (updates are
    throttled, the last one always lands); changing the widget sets the channel for every
    process, unless ``readonly``. Waits (cooperatively, up to the channel's timeout) for
    the channel's value if it is not known yet. Display the result (or ``.box``) to see it.
    """
    channel = _as_channel(channel, Channel)
    value = channel.value  # the widget type depends on it; raises TimeoutError if unknown
    if description is None:
        description = channel.name
    if widget is None:
        widget, adapter = default_widget(value, description=description, bounds=bounds,
                                         choices=choices, step=step)
        owns = True
    else:
        if not isinstance(widget, widgets.Widget) or not widget.has_trait("value"):
            raise TypeError(f"bind: {widget!r} is not an ipywidget with a 'value'")
        adapter = _adapter_for(widget)
        owns = False
    return Binding(channel, widget, adapter, interval=interval, readonly=readonly,
                   owns_widget=owns)


# -----------------------------------------------------------------------------------------
# Event log


class EventLog(_LiveView):
    """The last ``maxlen`` events of an :class:`EventChannel`, newest first, live.

    ``events`` holds ``(time.time(), event)`` pairs; ``count`` counts every event
    received since the log was made. Rendering is throttled like bindings.
    """

    def __init__(self, channel: EventChannel, maxlen: int = 200,
                 interval: float = DEFAULT_INTERVAL, description: str | None = None):
        if maxlen < 1:
            raise ValueError(f"an event log keeps at least 1 event, not {maxlen!r}")
        self.channel = channel
        self.description = channel.name if description is None else description
        self.events: deque[tuple[float, Any]] = deque(maxlen=maxlen)
        self.count = 0
        self._closed = False
        self._live_key: Any = None  # set when shared as a channel's live widget
        self.header = widgets.HTML()
        self.view = widgets.HTML()
        self.clear_button = widgets.Button(description="clear", layout={"width": "auto"})
        self.clear_button.on_click(lambda _button: self.clear())
        self.box = widgets.VBox([widgets.HBox([self.header, self.clear_button]), self.view])
        self.throttle = Throttle(self._render, interval, name=f"events:{channel.name}")
        events, throttle = self.events, self.throttle

        def on_events(batch: list) -> None:
            now = time.time()
            events.extend((now, event) for event in batch)
            self.count += len(batch)
            throttle()

        self._callback = on_events
        channel.register_callback(on_events)
        self.box.observe(self._on_comm, "comm")
        self._render()
        REGISTRY.add(self)

    def clear(self) -> None:
        """Forget the events shown (the count goes on)."""
        self.events.clear()
        self._render()

    def _render(self) -> None:
        if self._closed:
            return
        shown = len(self.events)
        self.header.value = (f"<b>{html.escape(self.description)}</b>: {self.count} events"
                             + (f" (last {shown} shown)" if shown < self.count else ""))
        lines = []
        for stamp, event in reversed(self.events):
            clock = time.strftime("%H:%M:%S", time.localtime(stamp)) + f".{int(stamp % 1 * 1000):03d}"
            lines.append(f"{clock}  {html.escape(_short_repr(event))}")
        self.view.value = ('<pre style="max-height:16em;overflow-y:auto;margin:0">'
                           + "\n".join(lines) + "</pre>")

    def _teardown(self) -> None:
        """Stop listening and close the widgets."""
        self.throttle.close()
        self.channel.unregister_callback(self._callback)
        _forget_live(self)
        for w in (self.header, self.view, self.clear_button, self.box):
            w.close()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return _with_text(self.box._repr_mimebundle_(**kwargs), repr(self))

    def __repr__(self) -> str:
        return f"<EventLog {self.channel.name!r}: {self.count} events>"


def event_log(channel: EventChannel | str, maxlen: int = 200,
              interval: float = DEFAULT_INTERVAL) -> EventLog:
    """A live, bounded log widget of the events received on ``channel`` (or its name)."""
    return EventLog(_as_channel(channel, EventChannel), maxlen=maxlen, interval=interval)


# -----------------------------------------------------------------------------------------
# Cache editor


class CacheEditor(_LiveView):
    """Editable table of cached channel values, with a reset button (see :func:`cache_editor`)."""

    def __init__(self, targets: Sequence[Any], interval: float = DEFAULT_INTERVAL):
        self.objects = [t for t in targets if not isinstance(t, BaseChannel)]
        self.extra = [t for t in targets if isinstance(t, BaseChannel)]
        for channel in self.extra:
            if not isinstance(channel, Channel):
                raise TypeError(f"cache_editor: {channel!r} is not a Channel (Cache values "
                                f"are Channels)")
        self.interval = interval
        self.bindings: list[Binding] = []
        self._closed = False
        self.title = widgets.HTML()
        self.rows = widgets.VBox()
        self.reset_button = widgets.Button(description="reset to defaults", icon="undo",
                                           tooltip="clear_cache: every value back to its "
                                                   "default, in every process")
        self.reset_button.on_click(lambda _button: self.reset())
        self.refresh_button = widgets.Button(description="refresh", icon="refresh",
                                             tooltip="show cached values created since")
        self.refresh_button.on_click(lambda _button: self.refresh())
        self.box = widgets.VBox([self.title, self.rows,
                                 widgets.HBox([self.reset_button, self.refresh_button])])
        self.box.observe(self._on_comm, "comm")
        self.refresh()
        REGISTRY.add(self)

    def channels(self) -> list[Channel]:
        """The cached channels shown: the objects' (at refresh time) and those given."""
        found = cached_channels(*self.objects) if self.objects else []
        seen = {c.name for c in found}
        return sorted([*found, *(c for c in self.extra if c.name not in seen)],
                      key=lambda c: c.name)

    def refresh(self) -> None:
        """Rebuild the rows (shows Cache values created since the editor was made)."""
        for binding in self.bindings:
            binding.close()
        self.bindings = []
        names = [getattr(o, "name", repr(o)) for o in self.objects]
        channels = self.channels()
        prefix = f"{names[0]}:" if len(names) == 1 else None
        for channel in channels:
            label = channel.name
            if prefix and label.startswith(prefix):
                label = label[len(prefix):]
            self.bindings.append(bind(channel, description=label, interval=self.interval))
        what = ", ".join(names) if names else "cached values"
        empty = "" if channels else " (no cached values yet)"
        self.title.value = f"<b>{html.escape(what)}</b>{empty}"
        self.rows.children = [b.box for b in self.bindings]

    def reset(self) -> None:
        """``clear_cache`` on the objects, and each given channel back to its default."""
        if self.objects:
            clear_cache(*self.objects)
        for channel in self.extra:
            if not channel.closed:
                channel.value = channel.default_value

    def _teardown(self) -> None:
        for binding in self.bindings:
            binding.close()
        for w in (self.title, self.rows, self.reset_button, self.refresh_button, self.box):
            w.close()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.box._repr_mimebundle_(**kwargs)

    def __repr__(self) -> str:
        return f"<CacheEditor {len(self.bindings)} values>"


def cache_editor(*targets: Any, interval: float = DEFAULT_INTERVAL) -> CacheEditor:
    """A table of cached values to edit: give objects (their ``Cache`` channels are shown)
    and/or ``Cache`` channels (a list works too). The reset button calls ``clear_cache``.
    """
    flat: list[Any] = []
    for target in targets:
        if isinstance(target, (list, tuple)):
            flat.extend(target)
        else:
            flat.append(target)
    if not flat:
        raise TypeError("cache_editor needs an object with Cache values, or Cache channels")
    return CacheEditor(flat, interval=interval)


# -----------------------------------------------------------------------------------------
# Rich display


# channel -> its live widget, shared by every display of the channel: showing a channel
# again (re-running a cell) adds a view of the same widget instead of another binding
# that would keep receiving updates after its output was cleared.
_LIVE: dict[tuple[BaseChannel, int], Binding | EventLog] = {}


def live_widget(channel: BaseChannel, maxlen: int = 200) -> Binding | EventLog:
    """The live widget a channel displays as: a :class:`Binding` (default widget) or an
    :class:`EventLog` keeping ``maxlen`` events. One per channel (and ``maxlen``): every
    display of the channel shows the same widget."""
    key = (channel, maxlen if isinstance(channel, EventChannel) else 0)
    live = _LIVE.get(key)
    if live is None or live.closed:
        if isinstance(channel, EventChannel):
            live = EventLog(channel, maxlen=maxlen)
        else:
            live = bind(channel)
        _LIVE[key] = live
        live._live_key = key
    return live


def _forget_live(obj: Any) -> None:
    key = getattr(obj, "_live_key", None)
    if key is not None and _LIVE.get(key) is obj:
        del _LIVE[key]


class LivePanel(_LiveView):
    """An HTML widget refreshed every ``period`` seconds by a greenlet from ``render()``.

    Used for status displays (e.g. the saver's). ``render`` returns HTML; an exception
    is shown in place of the content. Stops with ``close()``, or by itself after the
    refresh at which ``until()`` (if given) returns true.
    """

    def __init__(self, render: Callable[[], str], period: float = 0.5,
                 until: Callable[[], bool] | None = None):
        self.render = render
        self.period = period
        self.until = until
        self.widget = widgets.HTML()
        self._closed = False
        self._refresh()
        self._greenlet = REGISTRY.spawn(self._run, name="beacon-live-panel")
        self.widget.observe(self._on_comm, "comm")
        REGISTRY.add(self)

    def _refresh(self) -> None:
        try:
            self.widget.value = self.render()
        except Exception as exc:  # noqa: BLE001 - shown, the panel goes on
            self.widget.value = _error_html(f"{type(exc).__name__}: {exc}")

    def _run(self) -> None:
        while not self._closed:
            gevent.sleep(self.period)
            self._refresh()
            try:
                finished = self.until is not None and self.until()
            except Exception:  # noqa: BLE001 - keep refreshing
                finished = False
            if finished:
                self._greenlet = None
                self.close()
                return

    def _teardown(self) -> None:
        self._refresh()
        if self._greenlet is not None:
            if self._greenlet is not gevent.getcurrent():
                self._greenlet.kill(block=False)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


def html_table(rows: Iterable[Sequence[Any]], header: Sequence[str]) -> str:
    """A small HTML table (cells escaped)."""
    head = "".join(f"<th style='text-align:left'>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td style='text-align:left'>{html.escape(str(c))}</td>"
                         for c in row) + "</tr>"
        for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
