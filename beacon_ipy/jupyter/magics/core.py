"""``%channel``, ``%eventpost``, ``%savescans``, ``%liveplot``: thin magics over the Python API.

Each magic parses its line (:mod:`.line`), evaluates Python expressions in the user's
namespace, and calls plain Python: :mod:`beacon_ipy.channels` (``open_channels``,
``Channel.get(timeout=...)``), :mod:`beacon_ipy.jupyter.widgets`,
:mod:`beacon_ipy.saving.background` (``start_saving`` / ``stop_saving``, run on the main
gevent hub) or :mod:`beacon_ipy.jupyter.liveplot`. User
mistakes (a bad option, an expression that does not evaluate, a value that cannot be
sent, a channel nobody answers for) raise :class:`~IPython.core.error.UsageError` with
a message saying what to do, never a traceback. ``%channel?`` shows the usage.
"""

from __future__ import annotations

import ast
import shlex
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from IPython.display import display

from beacon_ipy.channels import BaseChannel, Channel, EventChannel, open_channels
from beacon_ipy.connection import RedisUnavailableError
from beacon_ipy.jupyter import mainhub
from beacon_ipy.jupyter.magics.line import split_line, tokens
from beacon_ipy.jupyter.magics.tables import ChannelTable, SaverStatusView
from beacon_ipy.jupyter.registry import REGISTRY
from beacon_ipy.jupyter.widgets import LivePanel, live_widget, short_repr

#: The line magics registered by ``%load_ext beacon_ipy`` (removed by ``%unload_ext``).
MAGIC_NAMES = ("channel", "eventpost", "savescans", "liveplot")


@magics_class
class BeaconMagics(Magics):
    """The beacon-ipy magics (registered by ``%load_ext beacon_ipy``)."""

    # -- helpers -------------------------------------------------------------------------
    def _eval(self, expr: str, what: str) -> Any:
        """Evaluate ``expr`` in the user namespace; a failure is the user's: UsageError."""
        try:
            return eval(expr, self.shell.user_ns)  # noqa: S307 - the user's own code
        except Exception as exc:  # noqa: BLE001 - reported as a usage error
            raise UsageError(f"{what}: cannot evaluate {expr!r}: {type(exc).__name__}: "
                             f"{exc}") from None

    def _open(self, cls: type[BaseChannel], name: str, **kwargs: Any) -> Any:
        try:
            return REGISTRY.open_channel(cls, name, **kwargs)
        except TypeError as exc:
            other = "%eventpost" if cls is Channel else "%channel"
            raise UsageError(f"{exc}. Use {other} {name} for it, or pick another name.") \
                from None
        except RedisUnavailableError as exc:
            raise UsageError(str(exc)) from None

    @staticmethod
    def _read(channel: Channel, timeout: float | None) -> Any:
        """The channel's value, waiting at most ``timeout`` (default: the channel's).

        After a timeout or an interrupt the next read asks the other processes again
        (with its own timeout) instead of waiting on this read's unanswered query.
        """
        try:
            return channel.get(timeout=timeout)
        except TimeoutError as exc:
            channel.requery()
            raise UsageError(f"{exc}. Wait longer with --timeout SECONDS, or give a "
                             f"fallback with --default EXPR.") from None
        except KeyboardInterrupt:
            channel.requery()
            raise

    # -- %channel ------------------------------------------------------------------------
    @magic_arguments()
    @argument("--default", metavar="EXPR",
              help="value to use if no process holds the channel (a Python expression; "
                   "quote it if it has spaces)")
    @argument("--timeout", type=float, metavar="SECONDS",
              help="how long to wait for the value (default: the channel's, 10 s)")
    @argument("--watch", action="store_true",
              help="show a live widget of the value (changing the widget sets the channel)")
    @argument("name", nargs="?", metavar="NAME [= EXPR]",
              help="the channel; without it, list this kernel's channels. "
                   "'NAME = EXPR' sets it (EXPR is evaluated in your namespace)")
    @line_magic
    def channel(self, line: str) -> Any:
        """Show, set or watch a Beacon channel shared with other processes.

        Examples::

            %channel                      # this kernel's channels and their values
            %channel motor:velocity       # the value (waits for it if needed)
            %channel motor:velocity = 2.5 # set it, in every process
            %channel --default 0 counter  # 0 if no process holds "counter"
            %channel --watch motor:velocity   # a live widget
            v = %channel motor:velocity
        """
        opts, name, rest = split_line(line, {"--default", "--timeout"})
        tail = ""
        if rest.startswith("-"):  # options after the name
            tail, rest = " " + rest, ""
        args = parse_argstring(self.channel, opts + (shlex.quote(name) if name else "") + tail)
        if name is None or name == "":
            if rest or args.watch or args.default is not None:
                raise UsageError("%channel: give a channel name, e.g. %channel --watch NAME")
            return ChannelTable(open_channels())
        kwargs: dict[str, Any] = {}
        if args.default is not None:
            kwargs["default_value"] = self._eval(args.default, f"%channel {name} --default")
        if args.timeout is not None and args.timeout <= 0:
            raise UsageError(f"%channel: --timeout must be a positive number of seconds, "
                             f"not {args.timeout:g}")
        assignment = None
        if rest:
            if not rest.startswith("=") or rest.startswith("=="):
                raise UsageError(f"%channel: unexpected {rest!r} after the name. To set the "
                                 f"channel, write: %channel {name} = EXPR")
            assignment = rest[1:].strip()
            if not assignment:
                raise UsageError(f"%channel {name} =: give the value, e.g. %channel {name} = 1")
            if args.watch:
                raise UsageError("%channel: --watch cannot be combined with setting a value")
        if assignment is not None:
            value = self._eval(assignment, f"%channel {name} = ...")
            channel = self._open(Channel, name, **kwargs)
            try:
                channel.value = value
            except (TypeError, RuntimeError) as exc:
                raise UsageError(f"%channel {name}: cannot set {short_repr(value, 80)}: "
                                 f"{exc}") from None
            return None
        channel = self._open(Channel, name, **kwargs)
        if args.watch:
            self._read(channel, args.timeout)  # the widget depends on the value: known now
            display(live_widget(channel))
            return None
        value = self._read(channel, args.timeout)
        if args.default is None and not channel.timestamp:
            # Nobody answered: the value is the channel's default (None), which a cell
            # would show as nothing at all. Say so.
            print(f"No process holds a value for {name!r}: it is {short_repr(value, 80)} "
                  f"(its default). Set one with %channel {name} = EXPR, or give a fallback "
                  f"with --default EXPR.")
        return value

    # -- %eventpost ----------------------------------------------------------------------
    @magic_arguments()
    @argument("--listen", action="store_true",
              help="show a live log of the events received on NAME instead of posting")
    @argument("--max", type=int, default=200, metavar="N",
              help="with --listen: how many of the latest events the log keeps (default 200)")
    @argument("name", metavar="NAME [EXPR, ...]",
              help="the event channel, then the events to post: Python expressions "
                   "separated by commas")
    @line_magic
    def eventpost(self, line: str) -> Any:
        """Post events to a Beacon EventChannel, or show a live log of its events.

        Examples::

            %eventpost log "started"              # one event
            %eventpost log 1, 2.5, {"x": 3}       # three events, in order
            %eventpost log *my_list               # each item an event
            %eventpost --listen log               # live log of the last 200 events
            %eventpost --listen --max 20 log
        """
        opts, name, rest = split_line(line, {"--max"})
        if not name:
            raise UsageError("%eventpost: give an event channel name, e.g. "
                             "%eventpost NAME EXPR[, EXPR...] or %eventpost --listen NAME")
        listen = any(line[a:b] == "--listen" for a, b in tokens(line))
        if listen and rest and not rest.startswith("-"):
            raise UsageError("%eventpost --listen NAME takes no events; post them with "
                             f"%eventpost {name} EXPR[, EXPR...]")
        if listen:  # no events to post: options may also follow the name
            args = parse_argstring(self.eventpost, line)
        else:
            args = parse_argstring(self.eventpost, opts + shlex.quote(name))
        if args.listen:
            if args.name != name or (rest and not rest.startswith("-")):
                raise UsageError("%eventpost --listen NAME takes no events; post them with "
                                 f"%eventpost {name} EXPR[, EXPR...]")
            if args.max < 1:
                raise UsageError(f"%eventpost: --max must be at least 1, not {args.max}")
            channel = self._open(EventChannel, name)
            display(live_widget(channel, maxlen=args.max))
            return None
        if not rest:
            raise UsageError(f"%eventpost {name}: give the events to post, e.g. "
                             f"%eventpost {name} 'hello', 42")
        events = self._events(name, rest)
        channel = self._open(EventChannel, name)
        try:
            channel.post_many(events)
        except (TypeError, RuntimeError) as exc:
            raise UsageError(f"%eventpost {name}: cannot post: {exc}") from None
        return None

    def _events(self, name: str, rest: str) -> list:
        source = f"[{rest}]"
        try:
            tree = ast.parse(source, mode="eval")
        except SyntaxError:
            raise UsageError(f"%eventpost {name}: {rest!r} is not a list of Python expressions; "
                             f"separate events with commas: %eventpost {name} 1, 'two'") from None
        if not isinstance(tree.body, ast.List):
            raise UsageError(f"%eventpost {name}: {rest!r} is not a comma-separated list of "
                             f"events")
        return self._eval(source, f"%eventpost {name}")

    # -- %savescans ----------------------------------------------------------------------
    @magic_arguments()
    @argument("session", nargs="?", metavar="SESSION", help="the session whose scans to save")
    @argument("--dir", metavar="DIR", help="where to write the HDF5 files")
    @argument("--status", action="store_true", help="show what the saver is doing")
    @argument("--stop", action="store_true", help="stop saving (files are closed cleanly)")
    @argument("--release", action="store_true",
              help="with --stop: stop holding unsaved scans in Redis (they may expire)")
    @argument("--compression", choices=["gzip", "lzf"],
              help="compress the scans' data (gzip as BLISS's writer; default: none)")
    @line_magic
    def savescans(self, line: str) -> Any:
        """Save a session's scans to NeXus HDF5 files from this kernel, in the background.

        Examples::

            %savescans demo --dir ~/data      # start; shows a live status panel
            %savescans demo --dir ~/data --compression gzip   # smaller files
            %savescans --status
            %savescans --stop
        """
        args = parse_argstring(self.savescans, line)
        try:  # imported here: h5py and the saver only when saving
            from beacon_ipy.saving import SaverError
            from beacon_ipy.saving.background import (
                ENDED_STATES,
                current_saver,
                current_session,
                forget_ended,
                saver_state,
                start_saving,
                stop_saving,
            )
        except ImportError as exc:
            raise UsageError(f"%savescans needs the saver (beacon_ipy.saving), which cannot be "
                             f"imported here ({exc}). Reinstall beacon-ipy, or run "
                             f"`beacon-ipy save --session SESSION --dir DIR` in a "
                             f"terminal.") from None
        if not args.status:
            forget_ended()  # a saver that ended by itself (its status said why)
        saver = current_saver()
        if args.status or args.stop:
            if args.session or args.dir or args.compression:
                raise UsageError("%savescans --status / --stop take no session, --dir or "
                                 "--compression")
            if saver is None:
                raise UsageError("%savescans: no saver is running in this kernel; start one "
                                 "with %savescans SESSION --dir DIR")
            if args.stop:
                session = mainhub.call(stop_saving, release_holds=args.release)
                kept = ("" if args.release else " Scans not saved yet stay held in Redis "
                        "until a saver of this directory saves them (--release lets them "
                        "expire).")
                print(f"Stopped saving session {session!r}.{kept}")
                return None
            return SaverStatusView(saver)
        if not args.session:
            raise UsageError("%savescans: give a session, e.g. %savescans SESSION --dir DIR "
                             "(or --status / --stop)")
        if not args.dir:
            raise UsageError(f"%savescans {args.session}: say where to write the files with "
                             f"--dir DIR")
        if saver is not None:
            raise UsageError(f"%savescans: already saving session {current_session()!r}; "
                             f"stop it first with %savescans --stop")
        try:
            saver = mainhub.call(start_saving, args.session, args.dir,
                                 compression=args.compression)
        except (SaverError, OSError, ValueError, RedisUnavailableError) as exc:
            raise UsageError(f"%savescans {args.session}: {exc}") from None
        REGISTRY.add(SaverStopper(saver))
        display(LivePanel(lambda: SaverStatusView(saver)._repr_html_(),
                          until=lambda: saver_state(saver) in ENDED_STATES))
        return None

    # -- %liveplot -----------------------------------------------------------------------
    @magic_arguments()
    @argument("session", nargs="?", help="the session whose scans to plot")
    @argument("--y", "--counters", dest="y", metavar="A,B",
              help="0d channels to plot (full or short names; default: the scan's plot "
                   "hints)")
    @argument("--x", metavar="NAME", help="x axis channel ('index': the point index)")
    @argument("--normalize", metavar="MONITOR", help="divide the curves by this channel")
    @argument("--log", action="store_true", default=None, help="logarithmic y")
    @argument("--linear", dest="log", action="store_false", default=None, help="linear y")
    @argument("--default", action="store_true",
              help="forget the session's remembered x/y/log/monitor: the scan's default")
    @argument("--spectrum", metavar="NAME",
              help="1d channel for the spectrum/waterfall view (default: the first)")
    @argument("--history", type=int, default=2, metavar="N",
              help="earlier scans kept as faded lines")
    @argument("--new-only", action="store_true",
              help="only scans started from now (default: also the latest scan)")
    @argument("--backend", choices=["auto", "ipympl", "image"], default="auto")
    @argument("--stop", action="store_true",
              help="stop the live plot of SESSION (all without SESSION)")
    @line_magic
    def liveplot(self, line: str) -> Any:
        """Plot a session's scans live: counters vs the master axis, spectra, meshes.

        Examples::

            %liveplot demo
            %liveplot demo --y diode,monitor --history 5
            %liveplot demo --x elapsed_time --normalize monitor --log
            %liveplot demo --default
            %liveplot --stop

        x, y, monitor and log scale are remembered for the session's next scans (and
        plots); the controls above the plot change them too.
        """
        args = parse_argstring(self.liveplot, line)
        from beacon_ipy.jupyter.liveplot import liveplot, stop_liveplots

        if args.stop:
            closed = stop_liveplots(args.session)
            if not closed:
                raise UsageError("%liveplot --stop: no live plot is running")
            print(f"Stopped the live plot of {', '.join(closed)}.")
            return None
        if not args.session:
            raise UsageError("%liveplot: give a session, e.g. %liveplot demo")
        choice: dict[str, Any] = {"x": None, "y": None, "log": False, "normalize": None,
                                  "spectrum": None} if args.default else {}
        choice.update({k: v for k, v in {"x": args.x, "y": args.y, "log": args.log,
                                          "normalize": args.normalize,
                                          "spectrum": args.spectrum}.items() if v is not None})
        try:
            return liveplot(args.session, history=args.history,
                            include_last=not args.new_only, backend=args.backend, **choice)
        except (ValueError, TypeError, ImportError, RedisUnavailableError) as exc:
            raise UsageError(f"%liveplot {args.session}: {exc}") from None


class SaverStopper:
    """Registry entry stopping the saver started by ``%savescans`` on ``%unload_ext``."""

    def __init__(self, saver: Any):
        self.saver = saver

    def close(self) -> None:
        """Stop the saver (forgetting it as the current one if it still is)."""
        from beacon_ipy.saving.background import current_saver, stop_saving

        if current_saver() is self.saver:
            mainhub.call(stop_saving)
        else:
            mainhub.call(self.saver.stop)
