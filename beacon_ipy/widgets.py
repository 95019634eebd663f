"""Channel widgets: ``from beacon_ipy.widgets import bind``.

A short import path for :mod:`beacon_ipy.jupyter.widgets` (two-way channel bindings,
event logs, the cache editor), which holds the implementation and the details.
"""

from beacon_ipy.jupyter.widgets import (
    Binding,
    CacheEditor,
    DictEditor,
    EventLog,
    LivePanel,
    bind,
    cache_editor,
    default_widget,
    event_log,
    live_widget,
)

__all__ = [
    "Binding",
    "CacheEditor",
    "DictEditor",
    "EventLog",
    "LivePanel",
    "bind",
    "cache_editor",
    "default_widget",
    "event_log",
    "live_widget",
]
