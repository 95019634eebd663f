"""``beacon-ipy demo``: run simulated scans into a session (Ctrl-C to stop)."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--session", default="demo", help="session name (default: demo)")
    parser.add_argument("--scans", type=int, default=3,
                        help="number of scans, 0 = run until stopped (default: 3)")
    parser.add_argument("--npoints", type=int, default=20, help="points per scan (default: 20)")
    parser.add_argument("--count-time", type=float, default=0.1,
                        help="counting time per point in seconds (default: 0.1)")
    parser.add_argument("--data-dir", help="where scans' data go: each scan's identity path "
                        "and the files its h5maps name (BLISS's writer) and the simulated "
                        "detector's frames lie under DIR/<session>/scanNNNN (default: a "
                        "per-user data folder)", metavar="DIR")
    parser.add_argument("--no-mca", action="store_true", help="no MCA spectrum channel")
    parser.add_argument("--no-image", action="store_true", help="no 2D detector")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bars (default: only on a terminal)")


def run(args: argparse.Namespace) -> int:
    from beacon_ipy.connection import check_reachable
    from beacon_ipy.demo.run import run_demo

    if args.scans < 0 or args.npoints < 1 or args.count_time < 0:
        print("beacon-ipy demo: need --scans >= 0, --npoints >= 1, --count-time >= 0",
              file=sys.stderr)
        return 2
    url = check_reachable(args.redis_url)
    print(f"demo: session {args.session!r} on {url}; "
          f"{'until stopped (Ctrl-C)' if args.scans == 0 else f'{args.scans} scan(s)'}",
          flush=True)
    try:
        scans = run_demo(args.session, args.scans, args.npoints, args.count_time,
                         redis_url=url, data_dir=args.data_dir, progress=args.progress,
                         with_mca=not args.no_mca, with_image=not args.no_image)
    except KeyboardInterrupt:
        print("demo: stopped", file=sys.stderr)
        return 130
    for scan in scans:
        print(f"scan {scan.scan_nb} {scan.name}: {scan.end_reason}")
    return 0
