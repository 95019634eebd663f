"""Scan-data benchmark: beacon-ipy over blissdata vs blissdata itself, in one run.

One private module-enabled server (valkey + RedisJSON/RediSearch), side by side for each
workload:

- **producer**: a subprocess publishes one scan, either through blissdata directly
  (``DataStore.create_scan``, ``create_stream``, ``prepare``, ``start``, ``stream.send``,
  ``stop``, ``close``: ``bd``) or through beacon-ipy's producer (``create_scan``,
  ``start``, ``push``, ``end``: ``api``), after a 2-send warm-up scan (first-call costs
  such as imports are not throughput). Rate = values / (scan created -> scan closed).
- **consumer**: this process reads the same finished scan to its end, with blissdata's
  ``CursorGroup(scan.streams).read()`` loop (``cursor``) or with beacon-ipy's walker
  (``get_session_node(s).get_scan(n).walk_events()``, seed events with numpy blocks,
  through the ScanRunner: ``walk``). Rate = values / (start -> END).

Workloads: 10 x 0d float64 streams in blocks of 100 points, and one 2048-float32 spectrum
stream, 10 spectra per send. Medians over ``--repeat`` rounds (order alternated). Prints a
table, ratios (targets: walk >= 0.9 x cursor, api >= 0.9 x bd) and a final JSON line::

    python bench/scans.py [--points 200000] [--spectra 4000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.abspath(__file__)
WORKLOADS = {
    # name: (streams, point shape, dtype, points per send)
    "0d x10 f64, 100/send": (10, (), "float64", 100),
    "spectrum 2048 f32, 10/send": (1, (2048,), "float32", 10),
}


def producer(url: str, mode: str, workload: str, npoints: int, session: str) -> None:
    """Publish a warm-up scan, then the timed one; print {"seconds", "number"}."""
    nstreams, shape, dtype, block = WORKLOADS[workload]
    names = [f"dev:c{i}" for i in range(nstreams)]
    data = [np.random.default_rng(k).random((block, *shape)).astype(dtype)
            for k in range(nstreams)]
    for sends in (2, npoints // block):  # a small warm-up scan (first-call costs), timed one
        t0, number = _publish(url, mode, session, names, data, dtype, shape, sends)
    print(json.dumps({"seconds": time.perf_counter() - t0, "number": number}), flush=True)


def _publish(url, mode, session, names, data, dtype, shape, sends) -> tuple[float, int]:
    if mode == "bd":
        from blissdata import DataStore
        from blissdata.streams.default import Stream

        store = DataStore(url)
        number = int(store._redis.incr(f"bench:{session}"))
        t0 = time.perf_counter()
        scan = store.create_scan({"name": "bench", "number": number,
                                  "data_policy": "no_policy", "session": session},
                                 info={"title": "bench", "type": "bench"})
        streams = [scan.create_stream(Stream.make_definition(n, dtype, shape)) for n in names]
        scan.prepare()
        scan.start()
        for _ in range(sends):
            for stream, block_data in zip(streams, data, strict=True):
                stream.send(block_data)
        scan.stop()
        scan.close()
    else:
        from beacon_ipy.scans import StreamDescription, bdgaps, create_scan

        bdgaps.data_store(url)  # connected, as the blissdata side's DataStore(url) above
        t0 = time.perf_counter()
        scan = create_scan(session, {"type": "bench", "title": "bench"},
                           [StreamDescription.array(n, dtype, shape) for n in names],
                           redis_url=url, h5maps=False)
        scan.start()
        for _ in range(sends):
            scan.push(dict(zip(names, data, strict=True)))
        scan.end()
        number = scan.scan_nb
    return t0, number


def produce(url: str, mode: str, workload: str, npoints: int, session: str) -> dict:
    out = subprocess.run([sys.executable, HERE, "--role", "producer", "--url", url, "--mode",
                          mode, "--workload", workload, "--points", str(npoints), "--session",
                          session], capture_output=True, text=True, timeout=600)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def consume(url: str, mode: str, session: str, number: int) -> tuple[float, int]:
    """Read scan ``number`` of ``session`` to its end; (seconds, values read)."""
    values = 0
    t0 = time.perf_counter()
    if mode == "cursor":
        from blissdata.exceptions import EndOfStream
        from blissdata.streams import CursorGroup

        from beacon_ipy.scans import bdgaps

        store = bdgaps.data_store(url)
        _, keys = store.search_existing_scans(session=session, number=number)
        group = CursorGroup(store.load_scan(keys[0]).streams)
        while True:
            try:
                views = group.read(timeout=1)
            except EndOfStream:
                break
            for view in views.values():
                values += view.get_data().size
    else:
        from beacon_ipy.scans import get_session_node

        node = get_session_node(session, url).get_scan(number)
        for event_type, _, event in node.walk_events():
            if event_type == "NEW_DATA":
                values += event.data.size
    return time.perf_counter() - t0, values


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", default="main")
    parser.add_argument("--url")
    parser.add_argument("--mode")
    parser.add_argument("--workload")
    parser.add_argument("--session", default="bench")
    parser.add_argument("--points", type=int, default=200_000, help="0d points per stream")
    parser.add_argument("--spectra", type=int, default=4000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if args.role == "producer":
        producer(args.url, args.mode, args.workload, args.points, args.session)
        return 0

    from beacon_ipy.connection.private import PrivateRedis
    from beacon_ipy.scans import bdgaps

    results: dict = {}
    with PrivateRedis(tempfile.mkdtemp(prefix="bench-scans-")) as server:
        url = bdgaps.data_url(server.url)
        bdgaps.data_store(server.url)  # initialised for blissdata
        for workload, (nstreams, shape, _, _) in WORKLOADS.items():
            npoints = args.spectra if shape else args.points
            nvalues = nstreams * npoints * int(np.prod(shape or (1,)))
            prod = {"bd": [], "api": []}
            cons = {"cursor": [], "walk": []}
            for r in range(args.repeat):
                order = ("bd", "api") if r % 2 == 0 else ("api", "bd")
                numbers = {}
                for mode in order:
                    done = produce(url, mode, workload, npoints, f"bench-{mode}")
                    prod[mode].append(nvalues / done["seconds"])
                    numbers[mode] = done["number"]
                readers = ("cursor", "walk") if r % 2 == 0 else ("walk", "cursor")
                for mode in readers:  # both read the same scan (blissdata's)
                    seconds, got = consume(url, mode, "bench-bd", numbers["bd"])
                    assert got == nvalues, (mode, got, nvalues)
                    cons[mode].append(nvalues / seconds)
            row = {k: statistics.median(v) for k, v in {**prod, **cons}.items()}
            row["api/bd"] = row["api"] / row["bd"]
            row["walk/cursor"] = row["walk"] / row["cursor"]
            results[workload] = row
            print(f"{workload:28s} produce: blissdata {row['bd'] / 1e6:7.2f} M/s  beacon-ipy "
                  f"{row['api'] / 1e6:7.2f} M/s  ({row['api/bd']:.2f}x) | read: CursorGroup "
                  f"{row['cursor'] / 1e6:7.2f} M/s  walker {row['walk'] / 1e6:7.2f} M/s  "
                  f"({row['walk/cursor']:.2f}x)", flush=True)
    summary = {"bench": "scans", "unit": "values/s", "repeat": args.repeat,
               "points": args.points, "spectra": args.spectra,
               "workloads": {w: {k: round(v, 3) for k, v in r.items()}
                             for w, r in results.items()},
               "targets_met": all(r["api/bd"] >= 0.9 and r["walk/cursor"] >= 0.9
                                  for r in results.values())}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
