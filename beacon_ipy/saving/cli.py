"""``beacon-ipy save``: save a session's scans to NeXus HDF5 files, in the foreground.

One progress bar per scan being saved (or, with ``--json``, one JSON line per event:
``started``, ``saved``, ``error``, ``stopped``). Ctrl-C or SIGTERM stops cleanly:
scans that ended are finished, scans still running keep their "saver pending" marker
and the next ``beacon-ipy save`` on the same directory saves them from their beginning.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_USAGE = 0, 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--session", required=True, help="session whose scans are saved")
    parser.add_argument("--dir", required=True, dest="directory",
                        help="output directory: <dir>/<session>.h5 links every scan, "
                        "<dir>/<session>/scanNNNN.h5 holds each scan")
    parser.add_argument("--compression", choices=["gzip", "lzf"],
                        help="compress the scans' data (HDF5 filter + shuffle; gzip as "
                        "blisswriter; default: none, fastest)")
    parser.add_argument("--catch-up", action="store_true",
                        help="also save the scans already in Redis that have no file yet")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bars (default: only on a terminal)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON line per event instead of progress bars")
    parser.add_argument("--exit-after", type=int, default=0, metavar="N",
                        help="stop after N scans are saved (default: run until stopped)")
    parser.add_argument("--retry-interval", default="1:30", metavar="MIN[:MAX]",
                        help="seconds between attempts at a scan that failed, doubling up "
                        "to MAX (default 1:30)")
    parser.add_argument("--release-holds", action="store_true",
                        help="on exit, release the 'saver pending' markers of the scans not "
                        "saved (their data may then be trimmed from Redis normally)")


class _Display:
    """tqdm bars per scan, or JSON lines; fed by the saver's progress callback."""

    def __init__(self, json_lines: bool, progress: bool):
        self.json = json_lines
        self.progress = progress and not json_lines
        self.bars: dict[int, Any] = {}
        self.reported: dict[int, tuple] = {}
        self.saved = 0
        self.on_saved = None

    def emit(self, **msg: Any) -> None:
        if self.json:
            sys.stdout.write(json.dumps(msg) + "\n")
            sys.stdout.flush()

    def __call__(self, scan) -> None:
        key = (scan.state, scan.error, scan.retries)
        if self.reported.get(scan.scan_nb) != key:
            self.reported[scan.scan_nb] = key
            self._state_changed(scan)
        bar = self.bars.get(scan.scan_nb)
        if bar is not None:
            bar.n = scan.points
            bar.refresh()
            if scan.done or scan.state == "stopped":
                bar.close()
                del self.bars[scan.scan_nb]

    def _state_changed(self, scan) -> None:
        if scan.state == "saving" and scan.scan_nb not in self.bars:
            self.emit(event="scan", scan_nb=scan.scan_nb, name=scan.name, file=scan.file)
            if self.progress:
                from tqdm import tqdm

                self.bars[scan.scan_nb] = tqdm(total=scan.npoints, unit="pt", leave=True,
                                               desc=f"#{scan.scan_nb} {scan.title}"[:40],
                                               file=sys.stderr)
        elif scan.state == "saved":
            self.saved += 1
            self.emit(event="saved", scan_nb=scan.scan_nb, file=scan.file,
                      points=scan.points, end_reason=scan.end_reason)
            if not self.json:
                print(f"saved scan {scan.scan_nb} ({scan.end_reason}) -> {scan.file}",
                      flush=True)
            if self.on_saved is not None:
                self.on_saved(self.saved)
        elif scan.state in ("retrying", "failed"):
            self.emit(event="error", scan_nb=scan.scan_nb, state=scan.state, error=scan.error)
            if not self.json:
                print(f"scan {scan.scan_nb}: {scan.error}"
                      + (" (retrying)" if scan.state == "retrying" else ""),
                      file=sys.stderr, flush=True)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        self.bars.clear()


class _Footprint:
    """What exists of a save directory before a start, so that a refused start can remove
    what it created: the lock file, and the folders (only if they are still empty)."""

    def __init__(self, directory: Path, session: str):
        from beacon_ipy.saving import SaveLayout

        try:
            self.layout = SaveLayout(directory, session)
        except (ValueError, TypeError):
            self.layout = None
            return
        self.lock_existed = self.layout.lock_file.exists()
        self.created: list[Path] = []  # deepest first
        path = Path(os.path.abspath(self.layout.scans_dir))
        while not path.exists() and path != path.parent:
            self.created.append(path)
            path = path.parent

    def undo(self) -> None:
        if self.layout is None:
            return
        if not self.lock_existed:
            with contextlib.suppress(OSError):
                self.layout.lock_file.unlink()
        for path in self.created:
            with contextlib.suppress(OSError):  # not empty (or gone): leave it
                path.rmdir()


def run(args: argparse.Namespace) -> int:
    import gevent

    from beacon_ipy.connection import RedisUnavailableError
    from beacon_ipy.saving import SaverError, SessionSaver

    progress = args.progress if args.progress is not None else sys.stderr.isatty()
    display = _Display(args.json, progress)
    try:
        lo, _, hi = args.retry_interval.partition(":")
        retry = (float(lo), float(hi or max(30.0, float(lo))))
        if not 0 < retry[0] <= retry[1]:
            raise ValueError
    except ValueError:
        print(f"beacon-ipy save: --retry-interval {args.retry_interval!r}: expected MIN or "
              f"MIN:MAX in seconds, 0 < MIN <= MAX", file=sys.stderr)
        return EXIT_USAGE
    directory = Path(args.directory).expanduser()
    before = _Footprint(directory, args.session)
    try:
        saver = SessionSaver(args.session, directory, redis_url=args.redis_url,
                             catch_up=args.catch_up, on_progress=display,
                             retry_interval=retry, compression=args.compression)
        saver.start()
    except (SaverError, RedisUnavailableError, ValueError) as exc:
        before.undo()  # a refused start leaves no folder and no lock file behind
        display.emit(event="refused", error=str(exc))
        print(f"beacon-ipy save: {exc}", file=sys.stderr)
        return EXIT_USAGE

    def request_stop(*_: Any) -> None:
        if not saver.stopping:
            gevent.spawn(saver.stop, release_holds=args.release_holds)

    if args.exit_after > 0:
        display.on_saved = lambda n: request_stop() if n >= args.exit_after else None
    handlers = [gevent.signal_handler(signal.SIGTERM, request_stop),
                gevent.signal_handler(signal.SIGINT, request_stop)]
    while not saver.wait_ready(1.0) and not saver.wait(0):
        pass  # Redis unreachable at first: the saver waits for it
    display.emit(event="started", session=args.session, directory=str(saver.layout.directory),
                 master=str(saver.layout.master))
    if not args.json:
        print(f"saving session {args.session!r} into {saver.layout.directory} "
              f"(master file {saver.layout.master}); Ctrl-C to stop", flush=True)
    try:
        saver.wait()
    finally:
        for handler in handlers:
            handler.cancel()
        display.close()
    status = saver.status()
    display.emit(event="stopped", saved=len(status.saved), errors=status.errors[-5:])
    if not args.json:
        print(f"stopped: {len(status.saved)} scan(s) saved", flush=True)
    return EXIT_OK if status.state == "stopped" else 1
