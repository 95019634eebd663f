"""Live matplotlib plots of a session's scans: ``LivePlot(session)``, ``liveplot(session)``.

:mod:`.plot` holds :class:`LivePlot` (walker and drawer greenlets), :mod:`.figure` the
matplotlib figure (blitted redraws), :mod:`.canvas` where it shows (ipympl canvas, PNG
image widget, or Agg). What a plot keeps of a scan and the snapshot it draws need no
Jupyter: they live in :mod:`beacon_ipy.liveplot` (``data``, ``frame``).

:func:`liveplot`, :func:`stop_liveplots` and :func:`active_liveplots` are what the
``%liveplot`` magic calls: one plot per session, recorded so that ``%unload_ext
beacon_ipy`` stops it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from beacon_ipy.jupyter import mainhub
from beacon_ipy.jupyter.liveplot.plot import MAX_RATE, START_TIMEOUT, LivePlot
from beacon_ipy.jupyter.registry import REGISTRY

_active: dict[str, LivePlot] = {}


def _forget(plot: LivePlot) -> None:
    if _active.get(plot.session.name) is plot:
        del _active[plot.session.name]
    REGISTRY.discard(plot)


@mainhub.in_main_hub
def liveplot(session: str, counters: str | Sequence[str] | None = None, *,
             replace: bool = True, **options: Any) -> LivePlot:
    """Start a :class:`LivePlot` of ``session`` and return it (a notebook displays it).

    With ``replace`` (the default), a plot made earlier by this function for the same
    session is closed first, so re-running a cell does not pile up plots. The plot is
    recorded so that ``%unload_ext beacon_ipy`` stops it. ``options``: those of
    :class:`LivePlot`, e.g. ``x="elapsed_time"``, ``y=["diode", "monitor"]``,
    ``log=True``, ``normalize="monitor"`` (remembered for the session's next scans;
    ``counters`` is ``y``).
    """
    old = _active.pop(session, None) if replace else None
    if old is not None:
        old.close()
    plot = LivePlot(session, counters, **options)
    plot.on_close.append(_forget)
    _active[session] = plot
    REGISTRY.add(plot)
    return plot


@mainhub.in_main_hub
def stop_liveplots(session: str | None = None) -> list[str]:
    """Close the plots started by :func:`liveplot` (of ``session``, or all); returns the
    sessions whose plot was closed."""
    names = [session] if session is not None else list(_active)
    closed = []
    for name in names:
        plot = _active.get(name)
        if plot is not None:
            plot.close()
            closed.append(name)
    return closed


def active_liveplots() -> dict[str, LivePlot]:
    """The plots started by :func:`liveplot`, by session."""
    return dict(_active)


__all__ = ["MAX_RATE", "START_TIMEOUT", "LivePlot", "active_liveplots", "liveplot",
           "stop_liveplots"]
