"""Producer latency: how long a pushed point waits before a reader can see it.

blissdata's producer does not write a point when it is pushed: its sink (``blissdata.
streams.sink``, also BLISS's) queues commands and sends them once no new command came for
10 ms, or once the oldest waited 100 ms. A producer that pushes more often than every
10 ms is therefore sent in bursts about every 100 ms: that is the ingestion lag every
reader of such a scan sees (the live plot, Flint, the saver), whatever the reader does.

Side by side in one run, for each push period: ``beacon-ipy`` (the public producer API,
``create_scan`` + ``push``, over blissdata) and ``raw`` (redis-py ``XADD`` per point, the
reference). One point per push; a reader thread in this process waits in ``XREAD BLOCK``
on the stream and stamps each entry's arrival; latency = arrival - push (same clock).
Prints p50 / p99 / max latency and the number of bursts per workload, then a JSON line::

    python bench/producer_latency.py [--points 300] [--periods 20,10,8,5,1]
"""

from __future__ import annotations

import argparse
import json
import threading
import time

import numpy as np
import redis


def _reader(client: redis.Redis, key: str, n: int, arrivals: list[float]) -> None:
    last = "0-0"
    while len(arrivals) < n:
        reply = client.xread({key: last}, block=5000, count=10_000)
        if not reply:
            return
        now = time.perf_counter()
        for _, entries in reply:
            for entry_id, _ in entries:
                last = entry_id
                arrivals.append(now)


def _measure(client: redis.Redis, key: str, n: int, period: float, push) -> dict:
    arrivals: list[float] = []
    reader = threading.Thread(target=_reader, args=(client, key, n, arrivals))
    reader.start()
    pushed = []
    t0 = time.perf_counter()
    for i in range(n):
        while time.perf_counter() < t0 + i * period:  # paced on a schedule, as scans are
            time.sleep(min(0.001, period / 4))
        pushed.append(time.perf_counter())
        push(i)
    reader.join(30)
    if len(arrivals) < n:
        raise RuntimeError(f"{key}: {len(arrivals)} of {n} entries arrived")
    lat = (np.array(arrivals[:n]) - np.array(pushed)) * 1e3
    return {"p50_ms": float(np.median(lat)), "p99_ms": float(np.percentile(lat, 99)),
            "max_ms": float(lat.max()), "bursts": len(set(arrivals))}


def main() -> int:
    from beacon_ipy.connection.private import PrivateRedis
    from beacon_ipy.scans import StreamDescription, bdgaps, create_scan

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=300)
    parser.add_argument("--periods", default="20,10,8,5,1", help="push periods, ms")
    args = parser.parse_args()
    results = {}
    with PrivateRedis(data_store=True) as server:
        client = redis.Redis.from_url(bdgaps.data_url(server.url))
        print(f"{'period':>7} {'producer':<10} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} "
              f"{'bursts':>6}")
        for ms in (float(p) for p in args.periods.split(",")):
            row = {}
            scan = create_scan("latency", {"type": "timescan"},
                               [StreamDescription.scalar("value")], redis_url=server.url)
            scan.start()
            key = bdgaps.load_scan(bdgaps.data_store(server.url), scan.key).streams["value"].key
            row["beacon-ipy"] = _measure(client, key, args.points, ms / 1e3,
                                         lambda i, s=scan: s.push({"value": float(i)}))
            scan.end()
            raw_key = f"raw-latency:{ms}"
            row["raw"] = _measure(client, raw_key, args.points, ms / 1e3,
                                  lambda i, k=raw_key: client.xadd(k, {"v": str(i)}))
            for name, r in row.items():
                print(f"{ms:>5g}ms {name:<10} {r['p50_ms']:>7.1f} {r['p99_ms']:>7.1f} "
                      f"{r['max_ms']:>7.1f} {r['bursts']:>6}")
            row["p50_ratio"] = row["beacon-ipy"]["p50_ms"] / max(row["raw"]["p50_ms"], 1e-3)
            results[f"{ms:g}ms"] = row
    print(json.dumps({"bench": "producer_latency", "points": args.points,
                      "results": results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
