"""An editable table of ``Cache`` values, with a reset-to-defaults button."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import ipywidgets as widgets

from beacon_ipy.channels import BaseChannel, Channel, cached_channels, clear_cache
from beacon_ipy.jupyter import mainhub
from beacon_ipy.jupyter.registry import REGISTRY
from beacon_ipy.jupyter.throttle import DEFAULT_INTERVAL
from beacon_ipy.jupyter.widgets.binding import Binding, bind
from beacon_ipy.jupyter.widgets.liveview import LiveView


class CacheEditor(LiveView):
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
        self.title = widgets.HTML()
        self.rows = widgets.VBox()
        self.reset_button = widgets.Button(description="reset to defaults", icon="undo",
                                           tooltip="clear_cache: every value back to its "
                                                   "default, in every process")
        self.reset_button.on_click(lambda _button: self.reset())
        self.refresh_button = widgets.Button(description="refresh", icon="refresh",
                                             tooltip="show cached values created since")
        self.refresh_button.on_click(lambda _button: self.refresh())
        self.reset_button.add_class("beacon-cache-reset")
        self.refresh_button.add_class("beacon-cache-refresh")
        self.box = widgets.VBox([self.title, self.rows,
                                 widgets.HBox([self.reset_button, self.refresh_button])])
        self.box.observe(self.on_comm, "comm")
        self.refresh()
        REGISTRY.add(self)

    def channels(self) -> list[Channel]:
        """The cached channels shown: the objects' (at refresh time) and those given."""
        found = cached_channels(*self.objects) if self.objects else []
        seen = {c.name for c in found}
        return sorted([*found, *(c for c in self.extra if c.name not in seen)],
                      key=lambda c: c.name)

    @mainhub.on_main_hub
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

    @mainhub.on_main_hub
    def reset(self) -> None:
        """``clear_cache`` on the objects, and each given channel back to its default."""
        if self.objects:
            clear_cache(*self.objects)
        for channel in self.extra:
            if not channel.closed:
                channel.value = channel.default_value

    def teardown(self) -> None:
        for binding in self.bindings:
            binding.close()
        for w in (self.title, self.rows, self.reset_button, self.refresh_button, self.box):
            w.close()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.box._repr_mimebundle_(**kwargs)

    def __repr__(self) -> str:
        return f"<CacheEditor {len(self.bindings)} values>"


@mainhub.in_main_hub
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
