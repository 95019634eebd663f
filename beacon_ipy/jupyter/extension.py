"""``%load_ext beacon_ipy``: magics, channel-name completion, live display of channels.

Loading:

- in the ``beacon`` kernel, nothing else is needed: greenlets already run while idle;
- in a stock ``python3`` kernel, the gevent event-loop integration of
  :mod:`beacon_ipy.jupyter.eventloop` is enabled so that listeners run while the kernel
  is idle, and a note saying what is limited and how to switch kernel is printed once
  per process;
- the magics ``%channel``, ``%eventpost``, ``%savescans`` are registered, with tab
  completion of channel names, and ``Channel``/``EventChannel`` objects shown as a
  cell's result render as live widgets (only inside a Jupyter kernel; elsewhere they
  keep their text repr).

Loading twice is harmless (``%load_ext`` is idempotent, ``%reload_ext`` unloads then
loads). ``%unload_ext beacon_ipy`` stops everything the extension started (see
:mod:`beacon_ipy.jupyter.registry`): widget bindings, logs, panels, greenlets, the saver,
channels the magics opened and buses left empty; it removes the magics, the completer
and the display formatter, and switches off the integration it enabled.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from beacon_ipy.jupyter import eventloop

log = logging.getLogger("beacon_ipy.jupyter")

_MIMEBUNDLE = "application/vnd.jupyter.widget-view+json"


class _State:
    """What one load did, so that unload undoes exactly that."""

    def __init__(self, shell: Any):
        self.shell = shell
        self.mode = eventloop.NO_KERNEL
        self.enabled_integration = False
        self.matcher: Any = None
        self.formatter_type: type | None = None


_state: _State | None = None
_noted = False  # the stock-kernel note is printed once per process


def load_ipython_extension(ipython: Any) -> None:
    """Set the extension up in ``ipython`` (see the module docstring); idempotent."""
    global _state, _noted
    if _state is not None and _state.shell is ipython:
        return
    if _state is not None:  # another shell (unusual): move over
        unload_ipython_extension(_state.shell)
    from beacon_ipy.jupyter import mainhub

    mainhub.capture()  # the main thread's hub, where everything the extension starts runs
    state = _State(ipython)
    mode = eventloop.kernel_mode()
    if mode in (eventloop.STOCK, eventloop.STOCK_GEVENT):
        try:
            if mode == eventloop.STOCK:
                mode = eventloop.enable_integration()
                state.enabled_integration = mode == eventloop.STOCK_GEVENT
        except RuntimeError as exc:
            print(f"beacon_ipy: {exc}")
        if not _noted:
            _noted = True
            print(f"beacon_ipy: {eventloop.limitations(mode)}")
    state.mode = mode

    from beacon_ipy.jupyter.magics import BeaconMagics

    ipython.register_magics(BeaconMagics)
    state.matcher = _install_completer(ipython)
    if mode != eventloop.NO_KERNEL:
        state.formatter_type = _install_formatter(ipython)
    _state = state


def unload_ipython_extension(ipython: Any) -> None:
    """Stop everything the extension started and remove what it registered."""
    global _state
    from beacon_ipy.jupyter.registry import REGISTRY

    REGISTRY.close_all()
    state = _state
    _state = None
    if state is None:
        return
    _remove_magics(ipython)
    if state.matcher is not None:
        matchers = ipython.Completer.custom_matchers
        if state.matcher in matchers:
            matchers.remove(state.matcher)
    if state.formatter_type is not None:
        formatter = ipython.display_formatter.mimebundle_formatter
        try:
            formatter.pop(state.formatter_type)
        except KeyError:
            pass
    if state.enabled_integration:
        eventloop.disable_integration()


def loaded() -> bool:
    """True while the extension is loaded in this process."""
    return _state is not None


# -----------------------------------------------------------------------------------------


def _remove_magics(ipython: Any) -> None:
    from beacon_ipy.jupyter.magics import MAGIC_NAMES

    manager = ipython.magics_manager
    for name in MAGIC_NAMES:
        manager.magics["line"].pop(name, None)
    manager.registry.pop("BeaconMagics", None)


def _install_formatter(ipython: Any) -> type:
    """Render channels shown as a cell's result as live widgets."""
    from beacon_ipy.channels import BaseChannel

    def channel_mimebundle(channel: Any) -> dict | None:
        if channel.closed:
            return None  # falls back to the text repr
        try:
            from beacon_ipy.jupyter.widgets import live_widget

            live = live_widget(channel)
        except Exception as exc:  # noqa: BLE001 - a display must never fail the cell
            log.warning("cannot show %r as a widget: %s", channel, exc)
            return None
        data = live._repr_mimebundle_()
        if not data or _MIMEBUNDLE not in data:
            return None
        return {**data, "text/plain": repr(channel)}

    ipython.display_formatter.mimebundle_formatter.for_type(BaseChannel, channel_mimebundle)
    return BaseChannel


_MAGIC_LINE = re.compile(r"^\s*%(channel|eventpost)\s(.*)$")
_OPTIONS = {"channel": ["--default", "--timeout", "--watch"],
            "eventpost": ["--listen", "--max"]}


def channel_names(prefix: str = "", limit: int = 500) -> list[str]:
    """Channel names for completion: this kernel's, and those other processes are
    subscribed to on the servers this kernel uses (Redis ``PUBSUB CHANNELS``)."""
    from beacon_ipy.channels import Bus

    names = set()
    for bus in Bus.instances():
        if bus.closed:
            continue
        names.update(n for n in bus.channels if n.startswith(prefix))
        try:
            from beacon_ipy.connection import get_redis

            pattern = re.sub(r"([*?\[\]\\])", r"\\\1", prefix) + "*"
            for raw in get_redis(bus.url).execute_command("PUBSUB", "CHANNELS", pattern):
                names.add(raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw)
        except Exception as exc:  # noqa: BLE001 - completion is best effort
            log.debug("channel completion: %s", exc)
    return sorted(names)[:limit]


_VALUED = {"--default", "--timeout", "--max"}


def _has_positional(words: list[str]) -> bool:
    """Is there a non-option word (the channel name) among ``words``?"""
    skip = False
    for word in words:
        if skip:
            skip = False
        elif word.startswith("-"):
            skip = word in _VALUED
        else:
            return True
    return False


def _install_completer(ipython: Any) -> Any:
    """Add a completer of channel names after ``%channel`` / ``%eventpost``.

    Needs IPython >= 8.6 (matcher API v2); silently absent before.
    """
    try:
        from IPython.core.completer import SimpleCompletion, completion_matcher
    except ImportError:  # pragma: no cover - old IPython
        return None
    completer = getattr(ipython, "Completer", None)
    if completer is None or not hasattr(completer, "custom_matchers"):
        return None

    @completion_matcher(identifier="beacon_ipy.channel_names", priority=100, api_version=2)
    def beacon_channel_matcher(context: Any) -> dict:
        nothing = {"completions": [], "suppress": False}
        line = context.line_with_cursor[: context.cursor_position]
        match = _MAGIC_LINE.match(line)
        if match is None:
            return nothing
        magic, args = match.groups()
        if "=" in args and magic == "channel":
            return nothing  # completing the expression: Python's completion
        words = args.split()
        typed = "" if (not args or args[-1].isspace()) else words.pop()
        if _has_positional(words):
            return nothing  # the name is typed: what follows is Python
        token = context.token
        if not typed.endswith(token):
            return nothing
        cut = len(typed) - len(token)
        if typed.startswith("-"):
            candidates = [o for o in _OPTIONS[magic] if o.startswith(typed)]
            kind = "option"
        else:
            candidates = channel_names(typed)
            kind = "channel"
        return {"completions": [SimpleCompletion(c[cut:], type=kind) for c in candidates],
                "suppress": True}

    completer.custom_matchers.append(beacon_channel_matcher)
    return beacon_channel_matcher
