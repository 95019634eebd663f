"""Widget controls on a live plot: x, y (several), monitor, log scale, which scan, stats.

:class:`PlotControls` puts ipywidgets above the figure and binds them to
:meth:`LivePlot.select <beacon_ipy.jupyter.liveplot.plot.LivePlot.select>`: a change in
a control is a ``plot.select(...)`` (so it is remembered for the next scans of the
session), and after every drawn frame the controls show what the frame shows: the
shown scan's channels as options, the x and y actually drawn (the scan's default when
the user chose nothing), the scans the plot keeps (running ones marked) and the
statistics of the plotted curve.

Observers run in whatever thread handled the comm message (a subshell in JupyterLab
>= 4.4): they hand over to the main hub (:func:`beacon_ipy.jupyter.mainhub.on_main_hub`).
While the controls are being refreshed from a frame, their observers do nothing, so a
refresh never turns into a selection.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from beacon_ipy.jupyter import mainhub
from beacon_ipy.liveplot.selection import INDEX

if TYPE_CHECKING:
    from beacon_ipy.jupyter.liveplot.plot import LivePlot

DEFAULT = "(scan's default)"
NEWEST = "newest"


class PlotControls:
    """The controls of one live plot; :attr:`box` is the widget to display."""

    def __init__(self, plot: LivePlot):
        self.plot = plot
        layout = widgets.Layout(width="auto")
        self.x = widgets.Dropdown(description="x", options=[(DEFAULT, None)], layout=layout)
        self.y = widgets.SelectMultiple(description="y", options=[], rows=4, layout=layout)
        self.normalize = widgets.Dropdown(description="monitor", options=[("none", None)],
                                          layout=layout)
        self.log = widgets.Checkbox(description="log", value=plot.choice.log, indent=False,
                                    layout=widgets.Layout(width="70px"))
        self.scan = widgets.Dropdown(description="scan", options=[(NEWEST, None)],
                                     layout=layout)
        self.default_y = widgets.Button(description="default y", layout=layout,
                                        tooltip="back to the scan's own choice of curves")
        self.stats = widgets.HTML(value="")
        self.box = widgets.VBox([
            widgets.HBox([self.x, self.normalize, self.log, self.scan]),
            widgets.HBox([self.y, widgets.VBox([self.default_y, self.stats])]),
        ])
        self._refreshing = False
        self.x.observe(self._on_x, "value")
        self.y.observe(self._on_y, "value")
        self.normalize.observe(self._on_normalize, "value")
        self.log.observe(self._on_log, "value")
        self.scan.observe(self._on_scan, "value")
        self.default_y.on_click(self._on_default_y)
        plot.on_frame.append(self.refresh)

    # -- user -> plot (main hub) ---------------------------------------------------------
    @mainhub.on_main_hub
    def _on_x(self, change: dict[str, Any]) -> None:
        if not self._refreshing:
            self.plot.select(x=change["new"])

    @mainhub.on_main_hub
    def _on_y(self, change: dict[str, Any]) -> None:
        if not self._refreshing and change["new"]:
            self.plot.select(y=list(change["new"]))

    @mainhub.on_main_hub
    def _on_normalize(self, change: dict[str, Any]) -> None:
        if not self._refreshing:
            self.plot.select(normalize=change["new"])

    @mainhub.on_main_hub
    def _on_log(self, change: dict[str, Any]) -> None:
        if not self._refreshing:
            self.plot.select(log=bool(change["new"]))

    @mainhub.on_main_hub
    def _on_scan(self, change: dict[str, Any]) -> None:
        if not self._refreshing and (change["new"] is None
                                     or change["new"] in self.plot.models):
            self.plot.select(scan=change["new"])

    @mainhub.on_main_hub
    def _on_default_y(self, _button: Any) -> None:
        self.plot.select(y=None)

    # -- plot -> controls (after each frame) ---------------------------------------------
    def refresh(self, plot: LivePlot) -> None:
        """Show what the last frame shows (called after every drawn frame)."""
        frame = plot.last_frame
        model = plot.current_model()
        if frame is None:
            return
        self._refreshing = True
        # Each widget's changes of one refresh go out as one message (options and the
        # selection together): a select's view never meets a selection before its options.
        held = contextlib.ExitStack()
        for widget in (self.x, self.y, self.normalize, self.log, self.scan, self.stats):
            held.enter_context(widget.hold_sync())
        try:
            if model is not None:
                zero_d = [(m.display_name, n) for n, m in model.channels.items() if m.ndim == 0]
                _set_options(self.x, [(DEFAULT, None), ("point index", INDEX)] + zero_d)
                _set_options(self.y, zero_d)
                _set_options(self.normalize, [("none", None)] + zero_d)
            plan = frame.plan
            if plan is not None:
                _set_value(self.x, plot.choice.x if plot.choice.x in
                           [v for _, v in self.x.options] else None)
                _set_value(self.y, tuple(n for n in plan.curves
                                         if n in [v for _, v in self.y.options]))
                _set_value(self.normalize, plan.normalize)
            _set_value(self.log, plot.choice.log)
            scans = [(NEWEST, None)] + [
                (f"#{nb} {title[:40]}{' (running)' if running else ''}", nb)
                for nb, title, running in reversed(frame.scans)]
            _set_options(self.scan, scans)
            _set_value(self.scan, plot.pinned)
            stats = frame.stats
            self.stats.value = ("" if stats is None else
                                f"<code>{stats.y.split(':')[-1]}</code> vs "
                                f"<code>{(stats.x or 'point').split(':')[-1]}</code>: "
                                f"{stats.text()}")
        finally:
            try:
                held.close()
            finally:
                self._refreshing = False

    def close(self) -> None:
        if self.refresh in self.plot.on_frame:
            self.plot.on_frame.remove(self.refresh)
        self.box.close()
        for child in (self.x, self.y, self.normalize, self.log, self.scan, self.default_y,
                      self.stats):
            child.close()


def _set_options(widget: Any, options: list[tuple[str, Any]]) -> None:
    if list(widget.options) != options:
        value = widget.value
        widget.options = options
        values = [v for _, v in options]
        if isinstance(value, tuple):
            widget.value = tuple(v for v in value if v in values)
        else:
            _set_value(widget, value)


def _set_value(widget: Any, value: Any) -> None:
    if isinstance(widget, widgets.Dropdown):
        # By index: ipywidgets takes ``value=None`` as "nothing selected" (a blank
        # dropdown), while our defaults ("(scan's default)", "none", "newest") ARE None.
        values = [v for _, v in widget.options]
        index = values.index(value) if value in values else None
        if widget.index != index:
            widget.index = index
    elif widget.value != value:
        widget.value = value
