"""A live, bounded log of the events received on an :class:`EventChannel`."""

from __future__ import annotations

import html
import time
from collections import deque
from typing import Any

import ipywidgets as widgets

from beacon_ipy.channels import EventChannel
from beacon_ipy.jupyter import mainhub
from beacon_ipy.jupyter.registry import REGISTRY
from beacon_ipy.jupyter.throttle import DEFAULT_INTERVAL, Throttle
from beacon_ipy.jupyter.widgets.common import short_repr, with_text
from beacon_ipy.jupyter.widgets.liveview import LiveView, as_channel


class EventLog(LiveView):
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
        self.live_key: Any = None  # set when shared as a channel's live widget
        self.header = widgets.HTML()
        self.view = widgets.HTML()
        self.clear_button = widgets.Button(description="clear", layout={"width": "auto"})
        self.clear_button.on_click(lambda _button: self.clear())
        self.clear_button.add_class("beacon-event-log-clear")
        self.view.add_class("beacon-event-log")
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
        self.box.observe(self.on_comm, "comm")
        self._render()
        REGISTRY.add(self)

    @mainhub.on_main_hub
    def clear(self) -> None:
        """Forget the events shown (the count goes on)."""
        self.events.clear()
        self._render()

    def _render(self) -> None:
        if self.closed:
            return
        shown = len(self.events)
        self.header.value = (f"<b>{html.escape(self.description)}</b>: {self.count} events"
                             + (f" (last {shown} shown)" if shown < self.count else ""))
        lines = []
        for stamp, event in reversed(self.events):
            clock = time.strftime("%H:%M:%S", time.localtime(stamp)) + f".{int(stamp % 1 * 1000):03d}"
            lines.append(f"{clock}  {html.escape(short_repr(event))}")
        self.view.value = ('<pre style="max-height:16em;overflow-y:auto;margin:0">'
                           + "\n".join(lines) + "</pre>")

    def teardown(self) -> None:
        """Stop listening and close the widgets."""
        self.throttle.close()
        self.channel.unregister_callback(self._callback)
        for w in (self.header, self.view, self.clear_button, self.box):
            w.close()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return with_text(self.box._repr_mimebundle_(**kwargs), repr(self))

    def __repr__(self) -> str:
        return f"<EventLog {self.channel.name!r}: {self.count} events>"


@mainhub.in_main_hub
def event_log(channel: EventChannel | str, maxlen: int = 200,
              interval: float = DEFAULT_INTERVAL) -> EventLog:
    """A live, bounded log widget of the events received on ``channel`` (or its name)."""
    return EventLog(as_channel(channel, EventChannel), maxlen=maxlen, interval=interval)
