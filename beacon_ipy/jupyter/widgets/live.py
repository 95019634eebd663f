"""The live widget a channel shown as a cell's result renders as (one per channel)."""

from __future__ import annotations

from beacon_ipy.channels import BaseChannel, EventChannel
from beacon_ipy.jupyter import mainhub
from beacon_ipy.jupyter.widgets.binding import Binding, bind
from beacon_ipy.jupyter.widgets.eventlog import EventLog
from beacon_ipy.jupyter.widgets.liveview import LIVE


@mainhub.in_main_hub
def live_widget(channel: BaseChannel, maxlen: int = 200) -> Binding | EventLog:
    """The live widget a channel displays as: a :class:`Binding` (default widget) or an
    :class:`EventLog` keeping ``maxlen`` events. One per channel (and ``maxlen``): every
    display of the channel shows the same widget."""
    key = (channel, maxlen if isinstance(channel, EventChannel) else 0)
    live = LIVE.get(key)
    if live is None or live.closed:
        if isinstance(channel, EventChannel):
            live = EventLog(channel, maxlen=maxlen)
        else:
            live = bind(channel)
        LIVE[key] = live
        live.live_key = key
    return live
