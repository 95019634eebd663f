"""An HTML panel refreshed by a greenlet (the saver's live status)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gevent
import ipywidgets as widgets

from beacon_ipy.jupyter import mainhub
from beacon_ipy.jupyter.registry import REGISTRY
from beacon_ipy.jupyter.widgets.common import error_html
from beacon_ipy.jupyter.widgets.liveview import LiveView


class LivePanel(LiveView):
    """An HTML widget refreshed every ``period`` seconds by a greenlet from ``render()``.

    Used for status displays (e.g. the saver's). ``render`` returns HTML; an exception
    is shown in place of the content. Stops with ``close()``, or by itself after the
    refresh at which ``until()`` (if given) returns true.
    """

    @mainhub.in_main_hub
    def __init__(self, render: Callable[[], str], period: float = 0.5,
                 until: Callable[[], bool] | None = None):
        self.render = render
        self.period = period
        self.until = until
        self.widget = widgets.HTML()
        self._refresh()
        self._greenlet = REGISTRY.spawn(self._run, name="beacon-live-panel")
        self.widget.observe(self.on_comm, "comm")
        REGISTRY.add(self)

    def _refresh(self) -> None:
        try:
            self.widget.value = self.render()
        except Exception as exc:  # noqa: BLE001 - shown, the panel goes on
            self.widget.value = error_html(f"{type(exc).__name__}: {exc}")

    def _run(self) -> None:
        while not self.closed:
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

    def teardown(self) -> None:
        self._refresh()
        if self._greenlet is not None:
            if self._greenlet is not gevent.getcurrent():
                self._greenlet.kill(block=False)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)
