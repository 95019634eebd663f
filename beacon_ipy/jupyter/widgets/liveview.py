"""What every live view (binding, event log, cache editor, panel) shares.

A live view is recorded in the extension's registry (``%unload_ext`` closes it), is
closed once, and closes itself when the front end closes its widget. :data:`LIVE` maps a
channel to the live widget every display of that channel shows.
"""

from __future__ import annotations

from typing import Any

from beacon_ipy.channels import BaseChannel
from beacon_ipy.jupyter import mainhub
from beacon_ipy.jupyter.registry import REGISTRY


def as_channel(channel: BaseChannel | str, cls: type[BaseChannel]) -> BaseChannel:
    """``channel`` itself, or the channel of that name (opened through the registry)."""
    if isinstance(channel, str):
        return REGISTRY.open_channel(cls, channel)
    if not isinstance(channel, cls):
        raise TypeError(f"expected a {cls.__name__} (or its name), not {channel!r}")
    return channel


class LiveView:
    """What the live views share: registered with the extension (``%unload_ext`` closes
    them), closed once, and closed when the front end closes their widget."""

    _closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    @mainhub.on_main_hub
    def on_comm(self, change: Any) -> None:
        """Observer of the widget's ``comm``: the front end closed it, so close the view."""
        if change.new is None and not self._closed:
            self.close()

    @mainhub.in_main_hub
    def close(self) -> None:
        """Stop updating and close the widgets this view made (on the main hub, whatever
        the calling thread)."""
        if self._closed:
            return
        self._closed = True
        self.teardown()
        forget_live(self)
        REGISTRY.discard(self)

    def teardown(self) -> None:
        """What :meth:`close` does once: stop updates, unregister, close widgets."""
        raise NotImplementedError


# channel -> its live widget, shared by every display of the channel: showing a channel
# again (re-running a cell) adds a view of the same widget instead of another binding
# that would keep receiving updates after its output was cleared.
LIVE: dict[tuple[BaseChannel, int], LiveView] = {}


def forget_live(obj: Any) -> None:
    """Drop ``obj`` from :data:`LIVE` if it is a channel's live widget."""
    key = getattr(obj, "live_key", None)
    if key is not None and LIVE.get(key) is obj:
        del LIVE[key]
