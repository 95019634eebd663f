"""What a live plot draws for a scan: BLISS's plot hints, the user's choice, or inference.

BLISS scans describe their default plots in ``scan_info["plots"]``
(``bliss.scanning.scan_info.ScanInfo``):

* ``add_curve_plot(x=..., yleft=[...], yright=[...])`` -> ``{"kind": "curve-plot",
  "items": [{"kind": "curve", "x": ..., "y": ..., "y_axis": "left"|"right"}]}``
  (``ascan`` and friends: ``x`` only, the motor; ``timescan``: the elapsed time);
* ``add_scatter_plot(x=..., y=..., value=...)`` -> ``{"kind": "scatter-plot", "items":
  [{"kind": "scatter", "x": ..., "y": ..., "value": ...}]}`` (``amesh``: the two motors,
  no value); the axes' ``scan_info["channels"][axis]`` carry ``start``, ``stop``,
  ``axis_points``, ``axis_id`` (0 = fast) and ``axis_kind`` (``forth``/``backnforth``);
* ``add_1d_plot(x=..., y=[...])`` -> ``{"kind": "1d-plot", "x": ..., "items": [...]}``.

:func:`plan_scan` follows them as Flint does (``flint.scan_info_parser.plots``): a curve
plot with the hinted x axis and curves; a scatter plot for meshes, whose value is the
first counter that is not a time (unit ``"s"``) when the hint gives none; for a curve
plot that names no curve, Flint shows what ``plotselect`` chose (``display_extra``) or
the first counter that is not a time. 2D detectors (``acquisition_chain.*.images``)
get an image panel, 1D channels a spectrum panel, as Flint's inferred Lima/MCA plots.
Without ``plots``, today's rules hold: x is the first master axis, y every counter but
masters and timers, a mesh (``data_dim == 2``) is an image of its grid.

The user's :class:`Choice` (x, several y, log scale, monitor) wins over both, channel by
channel: a chosen channel the scan lacks falls back to the default and is reported in
:attr:`Plan.notes`. Pure functions over dicts: no Jupyter, no Redis.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from beacon_ipy.liveplot.data import ScanModel

#: ``Choice.x`` value meaning "the point index".
INDEX = "index"
_TIMERS = ("epoch", "elapsed_time")


@dataclass(frozen=True)
class Choice:
    """What the user asked for (None: the scan's default). Names are full channel names
    (``"simu:diode"``) or short ones (``"diode"``)."""

    x: str | None = None
    y: tuple[str, ...] | None = None
    log: bool = False
    normalize: str | None = None
    spectrum: tuple[str, ...] | None = None

    def updated(self, **changes: Any) -> Choice:
        """A copy with ``changes`` (validated: see :func:`clean_choice`)."""
        return clean_choice(replace(self, **changes))

    def as_dict(self) -> dict[str, Any]:
        return {"x": self.x, "y": list(self.y) if self.y is not None else None,
                "log": self.log, "normalize": self.normalize,
                "spectrum": list(self.spectrum) if self.spectrum is not None else None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Choice:
        return clean_choice(cls(x=data.get("x"), y=data.get("y"), log=bool(data.get("log")),
                                normalize=data.get("normalize"),
                                spectrum=data.get("spectrum")))


def names(value: str | Sequence[str] | None, what: str) -> tuple[str, ...] | None:
    """``None``, ``"a,b"`` or ``["a", "b"]`` -> tuple of names (clear error otherwise)."""
    if value is None:
        return None
    if isinstance(value, str):
        out = [v.strip() for v in value.split(",") if v.strip()]
    elif isinstance(value, Sequence) and all(isinstance(v, str) for v in value):
        out = [v.strip() for v in value if v.strip()]
    else:
        raise TypeError(f"{what} must be a name, a comma-separated string or a list of "
                        f"names, not {value!r}")
    if not out:
        raise ValueError(f"{what}: no name given (use None for the scan's default)")
    return tuple(out)


def clean_choice(choice: Choice) -> Choice:
    """Validate and normalise a choice (names as tuples, one x, one monitor)."""
    for what in ("x", "normalize"):
        value = getattr(choice, what)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise TypeError(f"{what} must be one channel name or None, not {value!r}")
    if not isinstance(choice.log, bool):
        raise TypeError(f"log must be True or False, not {choice.log!r}")
    return Choice(x=choice.x.strip() if choice.x else None, y=names(choice.y, "y"),
                  log=choice.log, normalize=choice.normalize.strip() if choice.normalize
                  else None, spectrum=names(choice.spectrum, "spectrum"))


@dataclass
class Plan:
    """What to draw for one scan."""

    kind: str  # "curves" or "scatter" (the main panel)
    source: str  # "hints" (scan_info plots), "inferred" (no hints)
    x: str | None = None  # curves: the x channel (None: point index)
    y: list[str] = field(default_factory=list)  # curves (left axis); scatter: [value]
    y_right: list[str] = field(default_factory=list)
    axes: tuple[str | None, str | None] = (None, None)  # scatter: fast (x) and slow (y)
    grid: tuple[int, int] | None = None  # scatter on a regular grid: (n_slow, n_fast)
    extent: tuple[float, float, float, float] | None = None  # x0, x1, y0, y1 of the grid
    backnforth: bool = False
    spectra: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    normalize: str | None = None
    log: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def curves(self) -> list[str]:
        return self.y + [n for n in self.y_right if n not in self.y]


# -- hints ---------------------------------------------------------------------------

@dataclass
class Hints:
    """The default plots of ``scan_info["plots"]`` that the live plot can follow."""

    curve: dict[str, Any] | None = None  # {"x": name|None, "left": [...], "right": [...]}
    scatter: dict[str, Any] | None = None  # {"x", "y", "value"}
    one_d: dict[str, Any] | None = None  # {"x", "y": [...]}
    images: list[str] = field(default_factory=list)


def read_hints(info: Mapping[str, Any]) -> Hints | None:
    """Parse ``scan_info["plots"]`` (None when the scan has none). The first unnamed plot
    of a kind is its default (BLISS's convention), else the first of that kind. Also
    accepts the older ``{"signal": ..., "axes": [...]}`` items and ``"image-plot"``."""
    plots = info.get("plots")
    if not isinstance(plots, list) or not plots:
        return None
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for plot in plots:
        if isinstance(plot, dict):
            by_kind.setdefault(str(plot.get("kind")), []).append(plot)

    def default(kind: str) -> dict[str, Any] | None:
        found = by_kind.get(kind) or []
        unnamed = [p for p in found if p.get("name") is None]
        return (unnamed or found or [None])[0]

    def items(plot: dict[str, Any], kind: str) -> list[dict[str, Any]]:
        out = [i for i in plot.get("items") or () if isinstance(i, dict)
               and i.get("kind", kind) == kind]
        if not out and (plot.get("signal") or plot.get("axes")):  # older form
            axes = list(plot.get("axes") or ())
            # NXdata order: the slow axis first, the fast (x) axis last
            out = [{"x": axes[-1] if axes else None, "y": axes[0] if len(axes) > 1 else None,
                    "value": plot.get("signal")} if kind == "scatter"
                   else {"x": axes[0] if axes else None, "y": plot.get("signal")}]
        return out

    hints = Hints()
    curve = default("curve-plot")
    if curve is not None:
        its = items(curve, "curve")
        xs = [i["x"] for i in its if i.get("x")]
        hints.curve = {"x": xs[0] if xs else None,
                       "left": [i["y"] for i in its if i.get("y") and i.get("y_axis") != "right"],
                       "right": [i["y"] for i in its if i.get("y") and i.get("y_axis") == "right"]}
    scatter = default("scatter-plot")
    if scatter is not None:
        its = items(scatter, "scatter") or [{}]
        hints.scatter = {k: its[0].get(k) for k in ("x", "y", "value")}
    one_d = default("1d-plot")
    if one_d is not None:
        hints.one_d = {"x": one_d.get("x"),
                       "y": [i["y"] for i in items(one_d, "curve") if i.get("y")]}
    for plot in by_kind.get("image-plot") or ():
        for item in items(plot, "image") or [{"image": plot.get("signal")}]:
            name = item.get("image") or item.get("value") or plot.get("signal")
            if name and name not in hints.images:
                hints.images.append(name)
    return hints


# -- channels --------------------------------------------------------------------------

def _chain_order(info: Mapping[str, Any]) -> tuple[list[str], list[str], list[str]]:
    """(master 0d axes, counter 0d channels, images) in acquisition-chain order."""
    masters: list[str] = []
    scalars: list[str] = []
    images: list[str] = []
    chain = info.get("acquisition_chain") or {}
    for top in chain.values() if isinstance(chain, dict) else ():
        top = top or {}
        master = top.get("master") or {}
        for name in master.get("scalars") or ():
            if name not in masters:
                masters.append(name)
        for name in top.get("scalars") or ():
            if name not in scalars:
                scalars.append(name)
        for name in [*(master.get("images") or ()), *(top.get("images") or ())]:
            if name not in images:
                images.append(name)
    return masters, [n for n in scalars if n not in masters], images


def unit_of(model: ScanModel, name: str) -> str:
    meta = model.channels.get(name)
    if meta is not None and meta.unit:
        return meta.unit
    described = (model.info.get("channels") or {}).get(name) or {}
    return str(described.get("unit") or "")


def find(model: ScanModel, want: str, dim: int) -> str | None:
    """The channel of dimension ``dim`` that ``want`` names (full, display or short name)."""
    pool = (model.images if dim == 2 else
            {n: m for n, m in model.channels.items() if m.ndim == dim})
    if want in pool:
        return want
    for name in pool:
        meta = pool[name].meta if dim == 2 else pool[name]
        if want in (meta.display_name, name.split(":")[-1]):
            return name
    return None


def counters(model: ScanModel) -> list[str]:
    """0d channels that are not master axes, in acquisition-chain order then arrival."""
    masters, ordered, _ = _chain_order(model.info)
    masters_set = set(masters) | set(model.masters)
    zero_d = [n for n, m in model.channels.items() if m.ndim == 0]
    out = [n for n in ordered if n in model.columns]
    out += [n for n in zero_d if n not in out and n not in masters_set]
    return out


def _not_time(model: ScanModel, names: list[str]) -> list[str]:
    return [n for n in names if unit_of(model, n) != "s"
            and not n.endswith(_TIMERS)]


def _display_extra(model: ScanModel) -> list[str]:
    extra = model.info.get("display_extra") or {}
    for key in ("displayed_channels", "plotselect"):
        wanted = extra.get(key) if isinstance(extra, dict) else None
        if isinstance(wanted, list):
            found = [n for n in (find(model, str(w), 0) for w in wanted) if n]
            if found:
                return found
    return []


# -- the plan ---------------------------------------------------------------------------

def plan_scan(model: ScanModel, choice: Choice | None = None) -> Plan:
    """What to draw for ``model`` given the user's ``choice``."""
    choice = choice or Choice()
    hints = read_hints(model.info)
    scatter = (hints.scatter is not None if hints is not None
               else model.mesh is not None)
    plan = Plan("scatter" if scatter else "curves", "hints" if hints else "inferred")
    notes = plan.notes

    def chosen(values: Sequence[str] | None, dim: int, what: str) -> list[str]:
        found = []
        for want in values or ():
            name = find(model, want, dim)
            if name is None:
                have = ", ".join(m.display_name for m in model.channels.values() if m.ndim == dim)
                notes.append(f"no {what} {want!r} in this scan (it has {have or 'none'})")
            elif name not in found:
                found.append(name)
        return found

    user_y = chosen(choice.y, 0, "counter")
    if scatter:
        _plan_scatter(model, hints, plan, user_y)
    else:
        _plan_curves(model, hints, plan, choice, user_y)
    if choice.normalize:
        monitor = find(model, choice.normalize, 0)
        if monitor is None:
            notes.append(f"no monitor {choice.normalize!r} in this scan")
        plan.normalize = monitor
    plan.log = choice.log
    plan.spectra = (chosen(choice.spectrum, 1, "1d channel") or
                    [n for n in ((hints.one_d or {}).get("y") or [] if hints else [])
                     if find(model, n, 1)] or
                    [n for n, m in model.channels.items() if m.ndim == 1])[:1]
    _, _, chain_images = _chain_order(model.info)
    hinted = [find(model, n, 2) for n in (hints.images if hints else [])]
    ordered = [n for n in hinted + chain_images if n and n in model.images]
    ordered += [n for n in model.images if n not in ordered]
    # Flint: a lima detector's ":image" channel is its default plot
    plan.images = sorted(ordered, key=lambda n: not n.endswith(":image"))[:1]
    return plan


def _plan_curves(model: ScanModel, hints: Hints | None, plan: Plan, choice: Choice,
                 user_y: list[str]) -> None:
    hint = (hints.curve if hints else None) or {}
    # x: the user's, else the hint's, else the first master axis, else the point index
    x: str | None = None
    if choice.x == INDEX and find(model, INDEX, 0) is None:
        x = None
    elif choice.x is not None:
        x = find(model, choice.x, 0)
        if x is None:
            plan.notes.append(f"no x axis {choice.x!r} in this scan")
    if x is None and choice.x != INDEX:
        x = next((n for n in ([hint.get("x")] if hint.get("x") else []) + model.masters
                  if n in model.columns), None)
        if x is None:
            x = model.x_axis()
    plan.x = x
    if user_y:
        plan.y = [n for n in user_y if n != x]
        return
    left = [n for n in (find(model, h, 0) for h in hint.get("left") or ()) if n]
    right = [n for n in (find(model, h, 0) for h in hint.get("right") or ()) if n]
    if left or right:
        plan.y, plan.y_right = left, right
    elif hints is not None:
        # Flint: plotselect / displayed channels, else the first counter not a time
        selected = _display_extra(model)
        candidates = [n for n in counters(model) if n != x]
        plan.y = selected or (_not_time(model, candidates) or candidates)[:1]
    else:
        plan.y = [n for n in model.default_counters() if n != x]


def _plan_scatter(model: ScanModel, hints: Hints | None, plan: Plan,
                  user_y: list[str]) -> None:
    hint = (hints.scatter if hints else None) or {}
    masters = list(model.masters)
    ax = find(model, hint["x"], 0) if hint.get("x") else None
    ay = find(model, hint["y"], 0) if hint.get("y") else None
    ax = ax or hint.get("x") or (masters[0] if masters else None)
    ay = ay or hint.get("y") or (masters[1] if len(masters) > 1 else None)
    plan.axes = (ax, ay)
    value = None
    if user_y:
        value = user_y[0]
    elif hint.get("value"):
        value = find(model, hint["value"], 0)
    if value is None:
        group = ((model.info.get("channels") or {}).get(ax) or {}).get("group")
        pool = [n for n in counters(model) if n not in (ax, ay)]
        grouped = [n for n in pool if group is not None and
                   ((model.info.get("channels") or {}).get(n) or {}).get("group") == group]
        pool = grouped or pool
        value = next(iter(_not_time(model, pool) or pool), None)
    plan.y = [value] if value else []
    plan.grid, plan.extent, plan.backnforth = _grid(model, ax, ay)


def _grid(model: ScanModel, ax: str | None, ay: str | None
          ) -> tuple[tuple[int, int] | None, tuple[float, float, float, float] | None, bool]:
    """Regular mesh: ``(n_slow, n_fast)``, extent and back-and-forth, from the axes'
    channel metadata (BLISS) or ``npoints1/2``, ``start``/``stop`` (older scans)."""
    described = model.info.get("channels") or {}
    mx, my = (described.get(ax) or {}), (described.get(ay) or {})
    try:
        if mx.get("axis_points") and my.get("axis_points"):
            n_fast, n_slow = int(mx["axis_points"]), int(my["axis_points"])
            if mx.get("axis_id", 0) > my.get("axis_id", 1):  # x is the slow one
                return None, None, False
            extent = (float(mx["start"]), float(mx["stop"]), float(my["start"]),
                      float(my["stop"]))
            return (n_slow, n_fast), extent, mx.get("axis_kind") == "backnforth"
    except (KeyError, TypeError, ValueError):
        pass
    if model.mesh is None:
        return None, None, False
    n_slow, n_fast = model.mesh
    try:
        starts, stops = model.info["start"], model.info["stop"]
        extent = (float(starts[0]), float(stops[0]), float(starts[1]), float(stops[1]))
    except (KeyError, TypeError, IndexError, ValueError):
        extent = None
    return (n_slow, n_fast), extent, model.backnforth
