"""A two-way, echo-free, throttled link between a :class:`Channel` and a widget.

Why throttled: a comm message costs about 0.12 ms of kernel time and the browser must
render each one, so a channel changing at 1 kHz would flood both. Updates to the front
end go through a :class:`~beacon_ipy.jupyter.throttle.Throttle` (at most one per
``interval``, 50 ms by default); the widget always ends on the latest value.

Why echo-free: a value applied to the widget because the channel changed must not be
sent back to the channel (it would bounce between processes, and a slider clamping an
out-of-range value would overwrite the channel). Changes made while applying a channel
value are ignored; only changes coming from the front end (or user code) set the channel.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gevent
import ipywidgets as widgets

from beacon_ipy.channels import Channel
from beacon_ipy.jupyter import mainhub
from beacon_ipy.jupyter.registry import REGISTRY
from beacon_ipy.jupyter.throttle import DEFAULT_INTERVAL, Throttle
from beacon_ipy.jupyter.widgets.adapters import Adapter, adapter_for, default_widget
from beacon_ipy.jupyter.widgets.common import error_html, short_repr, with_text
from beacon_ipy.jupyter.widgets.liveview import LiveView, as_channel


class Binding(LiveView):
    """A live two-way link between a :class:`Channel` and a widget (see :func:`bind`).

    ``widget`` is the control; ``box`` is what displays (the control and an error line).
    Displaying the binding displays ``box``. ``close()`` unlinks (and closes the widget
    if the binding created it); closing the widget closes the binding.
    """

    def __init__(self, channel: Channel, widget: widgets.Widget, adapter: Adapter, *,
                 interval: float = DEFAULT_INTERVAL, readonly: bool = False,
                 owns_widget: bool = False):
        self.channel = channel
        self.widget = widget
        self.readonly = readonly
        self._adapter = adapter
        self._owns_widget = owns_widget
        self.live_key: Any = None  # set when shared as a channel's live widget
        self._applying: Any = None  # the greenlet applying a channel value
        self.error = widgets.HTML()
        self.box = widgets.HBox([widget, self.error])
        self.throttle = Throttle(self._apply, interval, name=f"widget:{channel.name}")
        if readonly and hasattr(widget, "disabled"):
            widget.disabled = True
        self._apply()  # show the current value now (bind() made sure it is known)
        if not readonly:
            widget.observe(self._on_widget, "value")
        widget.observe(self.on_comm, "comm")
        throttle = self.throttle

        def on_channel(_value: Any) -> None:
            throttle()  # a plain function: the channel holds it strongly

        self._callback = on_channel
        channel.register_callback(on_channel)
        REGISTRY.add(self)

    def _apply(self) -> None:
        """Show the channel's current value in the widget (called through the throttle)."""
        if self.closed or not self.channel.has_value:
            return
        value = self.channel.value
        # Changes the widget makes while showing the value (in this greenlet) are not
        # sent back; a front-end change handled meanwhile by another greenlet still is.
        self._applying = gevent.getcurrent()
        try:
            self._adapter.show(value)
        except Exception as exc:  # noqa: BLE001 - shown to the user, the binding goes on
            self.error.value = error_html(f"cannot show {short_repr(value, 80)}: {exc}")
        else:
            self.error.value = ""
        finally:
            self._applying = None

    @mainhub.on_main_hub
    def _on_widget(self, change: Any) -> None:
        """The widget changed (front end or user code): set the channel for every process."""
        if self.closed or self._applying is gevent.getcurrent():
            return
        try:
            new = self._adapter.read(change.new)
            self.channel.value = new
        except Exception as exc:  # noqa: BLE001 - bad input: say so, keep the channel's value
            self.error.value = error_html(str(exc))
            return
        self.error.value = ""

    def teardown(self) -> None:
        """Unlink the widget from the channel; close the widget if the binding made it."""
        self.throttle.close()
        self.channel.unregister_callback(self._callback)
        try:
            self.widget.unobserve(self._on_widget, "value")
        except ValueError:
            pass
        try:
            self.widget.unobserve(self.on_comm, "comm")
        except ValueError:
            pass
        if self._owns_widget:
            self.widget.close()
        self.error.close()
        self.box.close()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return with_text(self.box._repr_mimebundle_(**kwargs), repr(self.channel))

    def __repr__(self) -> str:
        state = "closed" if self.closed else "live"
        return f"<Binding {self.channel.name!r} <-> {type(self.widget).__name__} ({state})>"


@mainhub.in_main_hub
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
    channel = as_channel(channel, Channel)
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
        adapter = adapter_for(widget)
        owns = False
    return Binding(channel, widget, adapter, interval=interval, readonly=readonly,
                   owns_widget=owns)
