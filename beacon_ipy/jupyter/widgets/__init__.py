"""ipywidgets bound to Beacon channels: two-way, echo-free, throttled.

- :func:`bind` ties a :class:`~beacon_ipy.channels.Channel` to a widget (one chosen from
  the value when none is given): a value set by any process shows in the widget, and
  moving the widget sets the channel for every process (:mod:`.binding`, :mod:`.adapters`).
- :func:`event_log` shows the events received on an
  :class:`~beacon_ipy.channels.EventChannel` (the last N, newest first; :mod:`.eventlog`).
- :func:`cache_editor` is a table of an object's ``Cache`` values, each editable, with a
  reset button calling ``clear_cache`` (:mod:`.cacheeditor`).
- :func:`live_widget` is what a channel shown as a cell's result renders as (the
  ``%load_ext beacon_ipy`` extension registers it as a display formatter; :mod:`.live`).
- :class:`LivePanel` is an HTML panel refreshed by a greenlet (:mod:`.panel`).

Everything works without a kernel too (widgets then have no front end), which is how the
binding logic is unit-tested; greenlets run whenever the process yields to gevent.
"""

from beacon_ipy.jupyter.widgets.adapters import default_widget
from beacon_ipy.jupyter.widgets.binding import Binding, bind
from beacon_ipy.jupyter.widgets.cacheeditor import CacheEditor, cache_editor
from beacon_ipy.jupyter.widgets.common import error_html, html_table, short_repr
from beacon_ipy.jupyter.widgets.dicteditor import DictEditor, format_literal, parse_literal
from beacon_ipy.jupyter.widgets.eventlog import EventLog, event_log
from beacon_ipy.jupyter.widgets.live import live_widget
from beacon_ipy.jupyter.widgets.panel import LivePanel

__all__ = [
    "Binding",
    "CacheEditor",
    "DictEditor",
    "EventLog",
    "LivePanel",
    "bind",
    "cache_editor",
    "default_widget",
    "error_html",
    "event_log",
    "format_literal",
    "html_table",
    "live_widget",
    "parse_literal",
    "short_repr",
]
