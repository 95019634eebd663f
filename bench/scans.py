"""Scan-data benchmark: publish -> walk through beacon-ipy vs raw redis-py XADD/XREAD.

One run, one private redis-server, two processes (a producer subprocess, the consumer
here), side by side for each workload:

- ``raw``: the transport floor as the issue defines it. The producer XADDs one entry per
  block, one field per channel holding ``ndarray.tobytes()`` (plain ``redis.Redis``, each
  XADD waits for its reply); the consumer XREADs (BLOCK, COUNT 1000) until an end marker.
- ``rawpipe``: the same with XADDs sent in redis-py pipelines of 64 (more throughput,
  but entries wait in the batch: a reference for what pipelining can give).
- ``api``: ``create_scan`` / ``start`` / ``push`` / ``end`` in the producer (pushes are
  pipelined without batching: each is sent at once, replies are collected later);
  ``get_session_node(...).walk_on_new_events(("scan", "channel"), from_next=True)`` in
  the consumer, which gets numpy blocks (``ChannelData``) until END_SCAN.

Workloads: 10 x 0d float64 channels (1 point per push, and 100 points per push), and one
2048-float32 spectrum channel (1 spectrum per push); ``--pushes`` blocks per run. Rate =
points / (last point received - first publish; the API side includes scan start and end),
median over ``--repeat`` runs (modes alternated, order reversed every other round). Also
reports each side's CPU time per push. Prints a table, ratios and a final JSON line
(target: api >= 0.9 x raw). Usage::

    python bench/scans.py [--pushes 3000] [--repeat 5] [--only WORKLOAD]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

HERE = os.path.abspath(__file__)
PIPE_BATCH = 64
MODES = ("raw", "rawpipe", "api")
WORKLOADS = {
    # name: (channels, point shape, dtype, points per push)
    "0d x10, 1 pt/push": (10, (), "float64", 1),
    "0d x10, 100 pts/push": (10, (), "float64", 100),
    "spectrum 2048 f32": (1, (2048,), "float32", 1),
}


def _say(**msg) -> None:
    sys.stdout.write(json.dumps(msg) + "\n")
    sys.stdout.flush()


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# ------------------------------------------------------------------------- producer role
def producer(url: str, mode: str, workload: str, npoints: int, session: str) -> None:
    nch, shape, dtype, block = WORKLOADS[workload]
    names = [f"c{i}" for i in range(nch)]
    blocks = [np.random.default_rng(k).random((block, *shape)).astype(dtype)
              for k in range(nch)]
    pushes = npoints // block
    if mode in ("raw", "rawpipe"):
        import redis

        r = redis.Redis.from_url(url)
        key = f"raw:{session}"
        r.ping()
        _say(event="ready")
        sys.stdin.readline()
        c0 = _cpu()
        t0 = time.time()
        if mode == "raw":
            for _ in range(pushes):
                r.xadd(key, {name: b.tobytes() for name, b in zip(names, blocks, strict=True)})
        else:  # batches of PIPE_BATCH XADDs per round trip
            pipe = r.pipeline(transaction=False)
            for k in range(pushes):
                pipe.xadd(key, {name: b.tobytes() for name, b in zip(names, blocks, strict=True)})
                if k % PIPE_BATCH == PIPE_BATCH - 1:
                    pipe.execute()
            pipe.execute()
        r.xadd(key, {"end": b"1"})
    else:
        from beacon_ipy.scans import ChannelSpec, create_scan

        scan = create_scan(session, {"type": "bench"},
                           [ChannelSpec(n, dtype, shape) for n in names], redis_url=url)
        _say(event="ready")
        sys.stdin.readline()
        c0 = _cpu()
        t0 = time.time()
        scan.start()
        for _ in range(pushes):
            scan.push(dict(zip(names, blocks, strict=True)))
        scan.end()
    _say(event="done", t0=t0, t_done=time.time(), cpu_s=_cpu() - c0)


# ------------------------------------------------------------------------- consumer side
def consume_raw(url: str, session: str) -> tuple[int, int, float]:
    import redis

    r = redis.Redis.from_url(url)
    key, last, nbytes, entries = f"raw:{session}", "0", 0, 0
    while True:
        reply = r.xread({key: last}, count=1000, block=10_000)
        if not reply:
            raise RuntimeError("raw consumer: no data for 10 s")
        for entry_id, fields in reply[0][1]:
            if b"end" in fields:
                return entries, nbytes, time.time()
            entries += 1
            nbytes += sum(len(v) for v in fields.values())
            last = entry_id


def consume_api(url: str, session: str, started) -> tuple[int, int, float]:
    from beacon_ipy.scans import get_session_node

    points, nbytes = 0, 0
    walk = get_session_node(session, url).walk_on_new_events(
        ("scan", "channel"), from_next=True, started_event=started, timeout=120)
    for event_type, _node, data in walk:
        if event_type == "NEW_DATA":
            points += len(data)
            nbytes += data.data.nbytes
        elif event_type == "END_SCAN":
            return points, nbytes, time.time()
    raise RuntimeError("api consumer: walk ended before END_SCAN")


def one_run(url: str, mode: str, workload: str, npoints: int, run_id: int) -> dict:
    import gevent
    import gevent.event

    session = f"bench{run_id}"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, HERE, "--role", "producer", "--url", url,
                             "--mode", mode, "--workload", workload, "--npoints", str(npoints),
                             "--session", session],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    assert json.loads(proc.stdout.readline())["event"] == "ready"
    nch, shape, dtype, block = WORKLOADS[workload]
    c0 = _cpu()
    if mode != "api":
        proc.stdin.write("go\n")
        proc.stdin.flush()
        count, nbytes, t_end = consume_raw(url, session)
        points = count * block
    else:
        started = gevent.event.Event()
        glet = gevent.spawn(consume_api, url, session, started)
        started.wait(10)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        points_ch, nbytes, t_end = glet.get()
        points = points_ch // nch
    c_cpu = _cpu() - c0
    done = json.loads(proc.stdout.readline())
    t0 = done["t0"]
    proc.wait(10)
    elapsed = t_end - t0
    expected = (npoints // block) * block
    if points != expected:
        raise RuntimeError(f"{mode} {workload}: received {points} points, sent {expected}")
    return {"points_per_s": points / elapsed, "mb_per_s": nbytes / elapsed / 1e6,
            "elapsed_s": elapsed, "producer_s": done["t_done"] - t0,
            "drain_s": t_end - done["t_done"], "producer_cpu_s": done["cpu_s"],
            "consumer_cpu_s": c_cpu}


def main() -> int:
    parser = argparse.ArgumentParser(description="scan data: beacon-ipy vs raw redis-py")
    parser.add_argument("--role", default="bench", choices=["bench", "producer"])
    parser.add_argument("--url")
    parser.add_argument("--mode", choices=MODES)
    parser.add_argument("--workload", choices=list(WORKLOADS))
    parser.add_argument("--npoints", type=int)
    parser.add_argument("--session")
    parser.add_argument("--pushes", type=int, default=3000,
                        help="blocks published per run (points = pushes x points per push)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--only", choices=list(WORKLOADS), action="append",
                        help="run only this workload (repeatable)")
    args = parser.parse_args()
    if args.role == "producer":
        producer(args.url, args.mode, args.workload, args.npoints, args.session)
        return 0

    from beacon_ipy.connection.private import PrivateRedis

    results: dict[str, dict] = {}
    with PrivateRedis() as server:
        run_id = 0
        print(f"server {server.program.binary} on {server.url}; python {sys.version.split()[0]}")
        print(f"{'workload':<22} {'mode':<7} {'points/s':>12} {'MB/s':>9} "
              f"{'prod µs/push':>10} {'cons µs/push':>10}  (CPU time)")
        for workload in args.only or WORKLOADS:
            npoints = args.pushes * WORKLOADS[workload][3]
            runs: dict[str, list[dict]] = {mode: [] for mode in MODES}
            for rep in range(args.repeat):
                for mode in MODES if rep % 2 == 0 else MODES[::-1]:
                    run_id += 1
                    runs[mode].append(one_run(server.url, mode, workload, npoints, run_id))
            summary = {}
            pushes = npoints // WORKLOADS[workload][3]
            for mode, rs in runs.items():
                pps = statistics.median(r["points_per_s"] for r in rs)
                mbs = statistics.median(r["mb_per_s"] for r in rs)
                pcpu = statistics.median(r["producer_cpu_s"] for r in rs) / pushes * 1e6
                ccpu = statistics.median(r["consumer_cpu_s"] for r in rs) / pushes * 1e6
                summary[mode] = {"points_per_s": round(pps, 1), "mb_per_s": round(mbs, 2),
                                 "producer_cpu_us_per_push": round(pcpu, 1),
                                 "consumer_cpu_us_per_push": round(ccpu, 1)}
                print(f"{workload:<22} {mode:<7} {pps:>12,.0f} {mbs:>9.2f} {pcpu:>10.0f} "
                      f"{ccpu:>10.0f}")
            summary["ratio"] = round(summary["api"]["points_per_s"]
                                     / summary["raw"]["points_per_s"], 3)
            summary["ratio_vs_rawpipe"] = round(summary["api"]["points_per_s"]
                                                / summary["rawpipe"]["points_per_s"], 3)
            summary["npoints"] = npoints
            print(f"{workload:<22} api/raw = {summary['ratio']:.3f}   "
                  f"api/rawpipe = {summary['ratio_vs_rawpipe']:.3f}")
            results[workload] = summary
    worst = min(r["ratio"] for r in results.values())
    print(f"worst api/raw ratio: {worst:.3f} (target >= 0.9)")
    print(json.dumps({"bench": "scans", "repeat": args.repeat, "results": results,
                      "min_ratio": worst, "target": 0.9, "pass": worst >= 0.9}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
