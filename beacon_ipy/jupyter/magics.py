"""``%channel``, ``%eventpost`` and ``%savescans``: thin magics over the Python API.

Each magic parses its line, evaluates Python expressions in the user's namespace, and
calls :mod:`beacon_ipy.channels`, :mod:`beacon_ipy.jupyter.widgets` or the saver. User
mistakes (a bad option, an expression that does not evaluate, a value that cannot be
sent, a channel nobody answers for) raise :class:`~IPython.core.error.UsageError` with
a message saying what to do, never a traceback. ``%channel?`` shows the usage.
"""

from __future__ import annotations

import ast
import html
import os
import shlex
import time
from collections.abc import Iterator
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from IPython.display import display

from beacon_ipy.channels import BaseChannel, Bus, Channel, EventChannel
from beacon_ipy.connection import RedisUnavailableError
from beacon_ipy.jupyter import widgets as bw
from beacon_ipy.jupyter.registry import REGISTRY

_VALUE_WIDTH = 60


# -----------------------------------------------------------------------------------------
# Line splitting: "[OPTIONS] NAME [= EXPR | EXPR, ...]"


def _tokens(line: str) -> Iterator[tuple[int, int]]:
    """(start, end) spans of whitespace-separated tokens; quotes group."""
    i, n = 0, len(line)
    while i < n:
        while i < n and line[i].isspace():
            i += 1
        if i >= n:
            return
        start = i
        quote = None
        while i < n and (quote or not line[i].isspace()):
            ch = line[i]
            if quote:
                if ch == "\\":
                    i += 1
                elif ch == quote:
                    quote = None
            elif ch in "'\"":
                quote = ch
            i += 1
        yield start, i


def split_line(line: str, valued_options: set[str]) -> tuple[str, str | None, str]:
    """Split a magic line into (options text, NAME, rest after NAME).

    Options come first; ``valued_options`` take the next token as their value unless
    written ``--opt=value``. NAME is unquoted. For ``NAME=EXPR`` (no spaces), rest is
    ``"=EXPR"``.
    """
    expect_value = False
    for start, end in _tokens(line):
        token = line[start:end]
        if expect_value:
            expect_value = False
            continue
        if token.startswith("-") and not _is_number(token):
            expect_value = token in valued_options
            continue
        raw = token
        equal = _top_level_equal(raw)
        if equal is not None:
            raw, rest = raw[:equal], line[start + equal:]
        else:
            rest = line[end:]
        try:
            parts = shlex.split(raw)
        except ValueError as exc:
            raise UsageError(f"cannot read the channel name {raw!r}: {exc}") from None
        name = parts[0] if parts else ""
        return line[:start], name, rest.strip()
    return line, None, ""


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _top_level_equal(token: str) -> int | None:
    """Index of an assignment '=' outside quotes in ``token`` (not '==')."""
    quote = None
    for i, ch in enumerate(token):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "=" and token[i + 1:i + 2] != "=" and (i == 0 or token[i - 1] not in "=!<>"):
            return i
    return None


# -----------------------------------------------------------------------------------------
# The channel table of ``%channel``


class ChannelTable:
    """This kernel's channels and their values: text table, HTML table in Jupyter."""

    HEADER = ("name", "kind", "value", "writer", "age")

    def __init__(self, channels: list[BaseChannel]):
        self.channels = sorted(channels, key=lambda c: c.name)
        now = time.time()
        self.rows = [self._row(c, now) for c in self.channels]

    @staticmethod
    def _row(channel: BaseChannel, now: float) -> tuple[str, ...]:
        if isinstance(channel, EventChannel):
            return (channel.name, "EventChannel", "(events)", "", "")
        assert isinstance(channel, Channel)
        if not channel.has_value:
            return (channel.name, "Channel", "<waiting for value>", "", "")
        value = bw._short_repr(channel.value, _VALUE_WIDTH)
        stamp = channel.timestamp or 0.0
        if stamp == 0.0:
            return (channel.name, "Channel", value, "(default)", "")
        return (channel.name, "Channel", value, channel.writer_id or "",
                _age(now - stamp))

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        if not self.rows:
            return "No channels in this kernel yet (%channel NAME opens one)."
        table = [self.HEADER, *self.rows]
        widths = [max(len(r[i]) for r in table) for i in range(len(self.HEADER))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
                 for r in table]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        if not self.rows:
            return f"<i>{html.escape(repr(self))}</i>"
        return bw.html_table(self.rows, self.HEADER)


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _forget_query(channel: Channel) -> None:
    """After an abandoned read, let the next read ask again (with its own timeout)
    instead of waiting on the unanswered query of this one."""
    if isinstance(channel, Channel):
        channel.requery()


def kernel_channels() -> list[BaseChannel]:
    """Every open channel of this process, on every bus."""
    return [c for bus in Bus.instances() for c in list(bus.channels.values())]


# -----------------------------------------------------------------------------------------
# The magics


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
        old = channel.timeout
        if timeout is not None:
            channel.timeout = timeout
        try:
            return channel.value
        except TimeoutError as exc:
            _forget_query(channel)
            raise UsageError(f"{exc}. Wait longer with --timeout SECONDS, or give a "
                             f"fallback with --default EXPR.") from None
        except KeyboardInterrupt:
            _forget_query(channel)
            raise
        finally:
            channel.timeout = old

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
            return ChannelTable(kernel_channels())
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
                raise UsageError(f"%channel {name}: cannot set {bw._short_repr(value, 80)}: "
                                 f"{exc}") from None
            return None
        channel = self._open(Channel, name, **kwargs)
        if args.watch:
            old = channel.timeout
            if args.timeout is not None:
                channel.timeout = args.timeout
            try:
                binding = bw.live_widget(channel)
            except TimeoutError as exc:
                raise UsageError(f"{exc}. Wait longer with --timeout SECONDS, or give a "
                                 f"fallback with --default EXPR.") from None
            finally:
                channel.timeout = old
            display(binding)
            return None
        return self._read(channel, args.timeout)

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
        listen = any(line[a:b] == "--listen" for a, b in _tokens(line))
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
            display(bw.live_widget(channel, maxlen=args.max))
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
    @line_magic
    def savescans(self, line: str) -> Any:
        """Save a session's scans to NeXus HDF5 files from this kernel, in the background.

        Examples::

            %savescans demo --dir ~/data      # start; shows a live status panel
            %savescans --status
            %savescans --stop
        """
        args = parse_argstring(self.savescans, line)
        saver = _saver_state.get("saver")
        if saver is not None and _state_of(saver) in ("stopped", "failed") and not args.status:
            _forget_saver()  # it ended by itself (its status says why)
            saver = None
        if args.status or args.stop:
            if args.session or args.dir:
                raise UsageError("%savescans --status / --stop take no session or --dir")
            if saver is None:
                raise UsageError("%savescans: no saver is running in this kernel; start one "
                                 "with %savescans SESSION --dir DIR")
            if args.stop:
                session = _saver_state.get("session", "?")
                _forget_saver()
                saver.stop(release_holds=args.release)
                kept = ("" if args.release else " Scans not saved yet stay held in Redis "
                        "until a saver of this directory saves them (--release lets them "
                        "expire).")
                print(f"Stopped saving session {session!r}.{kept}")
                return None
            return _SaverStatus(saver)
        if not args.session:
            raise UsageError("%savescans: give a session, e.g. %savescans SESSION --dir DIR "
                             "(or --status / --stop)")
        if not args.dir:
            raise UsageError(f"%savescans {args.session}: say where to write the files with "
                             f"--dir DIR")
        if saver is not None:
            raise UsageError(f"%savescans: already saving session "
                             f"{_saver_state.get('session')!r}; stop it first with "
                             f"%savescans --stop")
        try:
            from beacon_ipy.saving import SaverError, SessionSaver
        except ImportError as exc:
            raise UsageError(f"%savescans needs the saver (beacon_ipy.saving), which cannot be "
                             f"imported here ({exc}). Reinstall beacon-ipy, or run "
                             f"`beacon-ipy save --session {args.session} --dir {args.dir}` "
                             f"in a terminal.") from None
        directory = os.path.expanduser(args.dir)
        try:
            saver = SessionSaver(args.session, directory)
            saver.start()
        except (SaverError, OSError, ValueError, RedisUnavailableError) as exc:
            raise UsageError(f"%savescans {args.session}: {exc}") from None
        _saver_state.update(saver=saver, session=args.session)
        _saver_state["stopper"] = REGISTRY.add(_Stopper(saver))
        display(bw.LivePanel(lambda: _SaverStatus(saver)._repr_html_(),
                             until=lambda: _state_of(saver) in ("stopped", "failed")))
        return None

    # -- %liveplot -----------------------------------------------------------------------
    @magic_arguments()
    @argument("session", nargs="?", help="the session whose scans to plot")
    @argument("--counters", metavar="A,B",
              help="0d channels (full or short names; default: the scan's plot hint)")
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
            %liveplot demo --counters diode,monitor --history 5
            %liveplot --stop
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
        try:
            return liveplot(args.session, args.counters, spectrum=args.spectrum,
                            history=args.history, include_last=not args.new_only,
                            backend=args.backend)
        except (ValueError, TypeError, ImportError, RedisUnavailableError) as exc:
            raise UsageError(f"%liveplot {args.session}: {exc}") from None


_saver_state: dict[str, Any] = {}


class _Stopper:
    """Registry entry stopping the saver on ``%unload_ext``."""

    def __init__(self, saver: Any):
        self.saver = saver

    def close(self) -> None:
        if _saver_state.get("saver") is self.saver:
            _saver_state.clear()
        self.saver.stop()


def _state_of(saver: Any) -> str:
    try:
        return str(getattr(saver.status(), "state", ""))
    except Exception:  # noqa: BLE001 - a broken status is not a running saver
        return "failed"


def _forget_saver() -> None:
    stopper = _saver_state.get("stopper")
    if stopper is not None:
        REGISTRY.discard(stopper)
    _saver_state.clear()


class _SaverStatus:
    """A snapshot of the saver's ``status()``: per-scan progress, files and errors.

    Text repr for ``%savescans --status``, HTML for the live panel. Reads the fields of
    :class:`beacon_ipy.saving.SaverStatus` by name, so it degrades to ``str(status)``.
    """

    HEADER = ("scan", "title", "state", "points", "file", "error")

    def __init__(self, saver: Any):
        self.status = saver.status()

    def _summary(self) -> str:
        s = self.status
        text = (f"Saving session {getattr(s, 'session', '?')!r} to "
                f"{getattr(s, 'directory', '?')} ({getattr(s, 'state', '?')}")
        if not getattr(s, "redis_connected", True):
            text += ", Redis unreachable: retrying"
        return text + ")"

    def _rows(self) -> list[tuple[str, ...]]:
        rows = []
        for nb, scan in sorted(getattr(self.status, "scans", {}).items()):
            npoints = getattr(scan, "npoints", None)
            points = f"{scan.points}/{npoints}" if npoints else str(scan.points)
            rows.append((str(nb), str(scan.title), str(scan.state), points, str(scan.file),
                         str(scan.error or "")))
        return rows

    def __repr__(self) -> str:
        if not hasattr(self.status, "scans"):
            return str(self.status)
        lines = [self._summary()]
        rows = self._rows()
        if rows:
            table = [self.HEADER, *rows]
            widths = [max(len(r[i]) for r in table) for i in range(len(self.HEADER))]
            lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                      for r in table]
        else:
            lines.append("no scan yet")
        lines += [f"error: {e}" for e in getattr(self.status, "errors", [])[-5:]]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        if not hasattr(self.status, "scans"):
            return f"<pre>{html.escape(str(self.status))}</pre>"
        parts = [f"<b>{html.escape(self._summary())}</b>"]
        rows = self._rows()
        parts.append(bw.html_table(rows, self.HEADER) if rows else "<i>no scan yet</i>")
        for error in getattr(self.status, "errors", [])[-5:]:
            parts.append(bw._error_html(error))
        return "<br>".join(parts)


MAGIC_NAMES = ("channel", "eventpost", "savescans", "liveplot")
