"""Saving benchmark: scan data -> HDF5 file, through this saver vs the alternatives.

One run, one private server (valkey + RedisJSON/RediSearch, as for every blissdata
scan), the same data for every pipeline, side by side:

- ``raw``: the previous figures' transport reference (as ``bench/scans.py``'s ``raw``):
  a producer process XADDs one entry per block (one field per channel,
  ``ndarray.tobytes()``); this process XREADs (COUNT 1000) until the end marker;
  nothing is written.
- ``naive``: the hand-written pipeline: the same XADDs; the consumer XREADs and, for
  every entry and channel, appends the block to an HDF5 dataset (resize + write).
- ``bdread``: the blissdata transport floor: the producer publishes a blissdata scan
  through the public producer API; this process reads every stream with blissdata's own
  ``CursorGroup`` until the end; nothing is written.
- ``saver``: the producer publishes through the public producer API
  (``create_scan``/``push``/``end``, as the demo does, a blissdata scan); a
  ``SessionSaver`` in another process writes the NeXus file; the time is when the
  finished file is in place.
- ``blisswriter`` (``--no-blisswriter`` to skip): the same producer with a data file
  path, so that the scan carries ``h5maps``; BLISS's own writer (``blisswriter run``,
  3.0.0, in its own virtualenv: ``BEACON_IPY_BLISSWRITER_PYTHON`` or the env that
  tests/blisswriter_env.py builds) writes it; the time is its "Saving complete" log line.
- ``saver-h5maps``: as ``saver``, but the producer gives a data file path, so the scan
  carries ``h5maps`` and the saver follows it (docs/saving.md "Following h5maps"): the
  layout blisswriter writes, from the saver's pipeline.
- ``saver-h5maps-backlog`` and ``blisswriter-backlog``: each writer's own rate. Both
  above pipelines are bound by blissdata's producer (it publishes 10 x 0d at 0.4–0.6 M
  points/s here, and both writers keep up); so the writer process is stopped (SIGSTOP)
  while the whole scan is published, then woken (SIGCONT): the time runs from its
  wake-up to its finished file. Same mechanism, same scan shape, same layout
  (h5maps) for both: their ratio is issue 11's "≥ 1.5× blisswriter".
  ``saver-h5maps-gzip-backlog``: the same with the saver's ``compression="gzip"``, as
  blisswriter compresses datasets above 1 MB (files of about the same size).
- ``h5py``: raw h5py appends of the same data in 64 MiB batches, then fsync as the saver
  does (the limit).

Rates are points (or MB) / (end - first publish), or / (end - wake-up) for the backlog
pipelines. Workloads: 10 x 0d float64 channels (100 points per push) and 2048-float32
spectra (100 per push). ``--repeat N`` runs the two backlog pipelines N times, alternating,
and reports each ratio (the machine's noise shows as their spread). Then a long 0d scan
(``--rss-points``, one channel, 1000 points per push) through the saver, sampling its
RSS: "flat" means the peak stays near the level reached after the first 10 % of points.
The saver process also runs a greenlet ticking every 2 ms; its longest gap shows that
HDF5 work does not freeze the hub. Files go to ``--dir`` (default: a directory in
/dev/shm, so that the numbers measure the pipeline rather than a shared virtual disk whose
speed swings between 0.1 and 1 GB/s; pass ``--dir /some/disk/dir`` to include a disk).
Prints a table, ratios and a final JSON line::

    python bench/saving.py [--points 1000000] [--spectra 40000] [--rss-points 10000000]
                           [--dir DIR] [--repeat 3] [--no-blisswriter] [--only-backlog]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
from saving_roles import (
    WORKLOADS,
    BlissWriter,
    blocks_of,
    consume,
    consume_blissdata,
    wait_points,
)

ROLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "saving_roles.py")


def h5py_limit(workload: str, npoints: int, path: str) -> float:
    """Seconds to append the same data with h5py in 64 MiB batches (and close)."""
    import h5py

    names, blocks = blocks_of(workload)
    nch, shape, dtype, block = WORKLOADS[workload]
    frame = np.dtype(dtype).itemsize * int(np.prod(shape))
    batch = max(block, (64 << 20) // (frame * nch) // block * block)
    big = [np.tile(b, (batch // block,) + (1,) * len(shape)) for b in blocks]
    t0 = time.perf_counter()
    with h5py.File(path, "w") as h5:
        dss = [h5.create_dataset(n, shape=(0, *shape), maxshape=(None, *shape), dtype=dtype,
                                 chunks=(max(1, (1 << 20) // frame), *shape)) for n in names]
        done = 0
        while done < npoints:
            n = min(batch, npoints - done)
            for ds, b in zip(dss, big, strict=True):
                ds.resize(done + n, axis=0)
                ds[done:] = b[:n]
            done += n
    fd = os.open(path, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    return time.perf_counter() - t0


# --------------------------------------------------------------------------------- runs
def _spawn(*args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, ROLES, *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env)


def _line(proc: subprocess.Popen) -> dict:
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"bench helper {proc.args} exited with {proc.wait()}")
    return json.loads(line)


def _go(prod: subprocess.Popen) -> None:
    prod.stdin.write("go\n")
    prod.stdin.flush()


def _publish_while_stopped(prod: subprocess.Popen, pid: int) -> tuple[float, dict]:
    """Backlog runs: the writer (``pid``, stopped before the producer created the scan)
    stays frozen while the whole scan is published, then is woken; returns the time it
    was woken (its work starts there) and the producer's "done" message."""
    try:
        _go(prod)
        done = _line(prod)
    finally:
        t_wake = time.time()
        os.kill(pid, signal.SIGCONT)
    return t_wake, done


def run(url: str, mode: str, workload: str, npoints: int, session: str, tmp: str) -> dict:
    """One pipeline on one workload; returns rate and details.

    ``mode`` ending in ``-backlog``: the writer's own rate, from a backlog (the writer
    process is stopped before the scan exists and while it is published whole; timed
    from its wake-up). Stopped any later, a writer may be frozen between blissdata's two
    reads of a scan being loaded (the JSON, then the state: NOTES §5's load race), and
    blisswriter then skips the scan ("Not to be saved") for want of ``h5maps``.
    """
    import redis

    backlog, gzip = mode.endswith("-backlog"), "-gzip" in mode
    base = mode.removesuffix("-backlog").removesuffix("-gzip")
    nbytes = npoints * len(blocks_of(workload)[1]) * blocks_of(workload)[1][0][0].nbytes
    per_push = str(WORKLOADS["spectra 2048 f32"][3])
    extra: dict = {}
    path_args: list[str] = []
    t_wake = None
    if base == "saver-h5maps":  # the scan carries h5maps; nobody writes that path
        path_args = ["--path", os.path.join(tmp, "h5maps-src", session, f"{session}.h5")]
    if base == "blisswriter":
        writer = BlissWriter(url, session)
        path = os.path.join(tmp, "blisswriter", session, f"{session}.h5")
        path_args = ["--path", path]
        writer_pid = writer.proc.pid
    elif base in ("saver", "saver-h5maps"):
        sav = _spawn("--role", "saver", "--url", url, "--session", session, "--dir",
                     os.path.join(tmp, mode), *(["--compression", "gzip"] if gzip else []))
        ready = _line(sav)
        writer_pid = sav.pid
    if backlog:
        os.kill(writer_pid, signal.SIGSTOP)
    prod = _spawn("--role", "producer", "--url", url, "--mode",
                  "raw" if base in ("raw", "naive") else "api", "--workload", workload,
                  "--npoints", str(npoints), "--session", session,
                  "--spectra-per-push", per_push, *path_args)
    assert _line(prod)["event"] == "ready"
    done = None
    if base == "blisswriter":
        try:
            if backlog:
                t_wake, done = _publish_while_stopped(prod, writer_pid)
            else:
                _go(prod)
            t_end, cpu = writer.wait_saved(timeout=600)
            t_end = max(t_end, wait_points(path, npoints, timeout=120))  # really all there
        finally:
            writer.close()
        extra = {"file_mb": os.path.getsize(path) / 1e6, "writer_cpu_s": cpu}
    elif base in ("saver", "saver-h5maps"):
        if backlog:
            t_wake, done = _publish_while_stopped(prod, writer_pid)
        else:
            _go(prod)
        result = _line(sav)
        sav.wait(30)
        if result["state"] != "saved" or result["points"] != npoints:
            raise RuntimeError(f"saver: {result['state']} {result['points']} {result['error']}")
        t_end = result["t"]
        rss = [r for _, r in result["samples"]]
        warm = [r for p, r in result["samples"] if p >= npoints // 10] or rss
        extra = {"rss_start_mb": ready["rss"] / 1e6, "rss_after_10pct_mb": warm[0] / 1e6,
                 "rss_peak_mb": max(rss) / 1e6, "file_mb": os.path.getsize(result["file"]) / 1e6,
                 "writer_cpu_s": result["cpu_s"]}
        if not backlog:  # a stopped process has one long gap: meaningless there
            extra["max_tick_gap_ms"] = result["max_tick_gap_s"] * 1e3
    elif base == "bdread":
        _go(prod)
        points, t_end = consume_blissdata(url, session)
        if points != npoints:
            raise RuntimeError(f"{mode}: got {points} points of {npoints}")
    else:
        _go(prod)
        h5path = os.path.join(tmp, f"naive-{session}.h5") if base == "naive" else None
        points, t_end = consume(url, session, workload, h5path)
        if points != npoints:
            raise RuntimeError(f"{mode}: got {points} points of {npoints}")
    done = done or _line(prod)
    prod.wait(30)
    client = redis.Redis.from_url(url)
    for key in client.scan_iter("raw:*"):
        client.delete(key)
    for key in client.scan_iter("esrf:stream:*"):  # the scans' data (the index stays)
        client.delete(key)
    start = done["t0"] if t_wake is None else t_wake
    elapsed = t_end - start
    return {"points_per_s": npoints / elapsed, "mb_per_s": nbytes / elapsed / 1e6,
            "elapsed_s": elapsed, "producer_s": done["t_done"] - done["t0"],
            "drain_s": t_end - max(done["t_done"], start), **extra}


def _row(workload: str, mode: str, r: dict) -> None:
    print(f"{workload:<18} {mode:<22} {r['points_per_s']:>12,.0f} {r['mb_per_s']:>8.1f} "
          f"{r['elapsed_s']:>9.2f} {r.get('producer_s', 0):>10.2f} {r.get('drain_s', 0):>8.2f}"
          + (f"  tick gap {r['max_tick_gap_ms']:.0f} ms" if "max_tick_gap_ms" in r else ""))


def _ratio(a: dict, b: dict) -> float:
    return round(a["points_per_s"] / b["points_per_s"], 3)


def bench_workload(url: str, workload: str, npoints: int, args, tmp: str, counter) -> dict:
    """Every pipeline on one workload; the backlog pair ``--repeat`` times, alternating."""
    res: dict = {}
    modes = [] if args.only_backlog else ["raw", "naive", "bdread", "saver", "saver-h5maps"]
    if args.blisswriter and not args.only_backlog:
        modes.append("blisswriter")
    for mode in modes:
        res[mode] = run(url, mode, workload, npoints, f"b{next(counter)}", tmp)
        _row(workload, mode, res[mode])
    if args.blisswriter:
        ratios, gzip_ratios = [], []
        for _ in range(args.repeat):
            pair = {}
            for mode in ("saver-h5maps-backlog", "blisswriter-backlog",
                         "saver-h5maps-gzip-backlog"):
                pair[mode] = run(url, mode, workload, npoints, f"b{next(counter)}", tmp)
                _row(workload, mode, pair[mode])
            ratios.append(_ratio(pair["saver-h5maps-backlog"], pair["blisswriter-backlog"]))
            gzip_ratios.append(_ratio(pair["saver-h5maps-gzip-backlog"],
                                      pair["blisswriter-backlog"]))
            for mode, r in pair.items():
                res.setdefault(mode, r)  # the first repetition's details
        res["backlog_ratios"] = ratios
        res["gzip_backlog_ratios"] = gzip_ratios
        print(f"{'':<18} writers' own rate, saver-h5maps / blisswriter: "
              + ", ".join(f"{r:.2f}" for r in ratios) + "; both gzip: "
              + ", ".join(f"{r:.2f}" for r in gzip_ratios))
    if args.only_backlog:
        return res
    t = h5py_limit(workload, npoints, os.path.join(tmp, f"limit{next(counter)}.h5"))
    nch, shape, dtype, _ = WORKLOADS[workload]
    nbytes = npoints * nch * np.dtype(dtype).itemsize * int(np.prod(shape))
    res["h5py"] = {"points_per_s": npoints / t, "mb_per_s": nbytes / t / 1e6, "elapsed_s": t}
    _row(workload, "h5py", res["h5py"])
    s = res["saver"]
    res["saver_vs_naive"] = _ratio(s, res["naive"])
    res["saver_vs_raw"] = _ratio(s, res["raw"])
    res["saver_vs_bdread"] = _ratio(s, res["bdread"])
    res["h5maps_vs_saver"] = _ratio(res["saver-h5maps"], s)
    print(f"{'':<18} saver/naive = {res['saver_vs_naive']:.2f}  saver/raw = "
          f"{res['saver_vs_raw']:.2f}  saver/bdread = {res['saver_vs_bdread']:.2f}  "
          f"saver-h5maps/saver = {res['h5maps_vs_saver']:.2f}  RSS peak "
          f"{s['rss_peak_mb']:.0f} MB  saver CPU {s['writer_cpu_s']:.2f} s")
    if "blisswriter" in res:
        bw, sh = res["blisswriter"], res["saver-h5maps"]
        res["h5maps_vs_blisswriter"] = _ratio(sh, bw)
        print(f"{'':<18} end to end (producer-bound) saver-h5maps/blisswriter = "
              f"{res['h5maps_vs_blisswriter']:.2f}; lag after the producer: saver-h5maps "
              f"{sh['drain_s']:.2f} s, blisswriter {bw['drain_s']:.2f} s (CPU "
              f"{sh['writer_cpu_s']:.2f} vs {bw['writer_cpu_s']:.2f} s)")
    return res


def main() -> int:
    import itertools

    from beacon_ipy.connection.private import PrivateRedis

    parser = argparse.ArgumentParser(description="saving: saver vs blisswriter vs references")
    parser.add_argument("--blisswriter", action=argparse.BooleanOptionalAction, default=True,
                        help="also time BLISS's writer on the same scans (issue 11's target)")
    parser.add_argument("--only-backlog", action="store_true",
                        help="only the two writers' own rates (backlog pipelines)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="repetitions of the backlog pair (alternating)")
    parser.add_argument("--dir", help="where files are written (default: /dev/shm)")
    parser.add_argument("--points", type=int, default=1_000_000, help="0d points (10 channels)")
    parser.add_argument("--spectra", type=int, default=40_000, help="2048-float32 spectra")
    parser.add_argument("--rss-points", type=int, default=10_000_000,
                        help="points of the long 0d scan for the RSS check (0 = skip)")
    parser.add_argument("--spectra-per-push", type=int, default=100)
    args = parser.parse_args()
    if args.only_backlog and not args.blisswriter:
        parser.error("--only-backlog needs blisswriter")
    WORKLOADS["spectra 2048 f32"] = (1, (2048,), "float32", args.spectra_per_push)

    base = args.dir or ("/dev/shm" if os.path.isdir("/dev/shm") else None)
    tmp = tempfile.mkdtemp(prefix="bipy-bench-saving-", dir=base)
    results: dict[str, dict] = {}
    counter = itertools.count(1)
    try:
        with PrivateRedis(data_store=True) as server:
            print(f"redis-server on {server.url}; files in {tmp}")
            print(f"{'workload':<18} {'pipeline':<22} {'points/s':>12} {'MB/s':>8} "
                  f"{'elapsed s':>9} {'producer s':>10} {'drain s':>8}")
            for workload, npoints in (("0d x10", args.points),
                                      ("spectra 2048 f32", args.spectra)):
                results[workload] = bench_workload(server.url, workload, npoints, args, tmp,
                                                   counter)
            if args.rss_points and not args.only_backlog:
                r = run(server.url, "saver", "rss 0d x1", args.rss_points,
                        f"b{next(counter)}", tmp)
                growth = r["rss_peak_mb"] - r["rss_after_10pct_mb"]
                print(f"{'rss 0d x1':<18} saver   {r['points_per_s']:>12,.0f} "
                      f"{r['mb_per_s']:>8.1f} {r['elapsed_s']:>9.2f}   RSS start "
                      f"{r['rss_start_mb']:.0f} MB, after 10 % {r['rss_after_10pct_mb']:.0f} MB,"
                      f" peak {r['rss_peak_mb']:.0f} MB (growth {growth:.0f} MB)")
                results["rss"] = {key: round(v, 3) for key, v in r.items()}
                results["rss"]["npoints"] = args.rss_points
                results["rss"]["growth_mb"] = round(growth, 1)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    checks = {}
    for workload, short in (("0d x10", "0d"), ("spectra 2048 f32", "spectra")):
        res = results[workload]
        if "saver_vs_bdread" in res:  # the floor on blissdata scans: blissdata's reader
            checks[f"{short}_saver_vs_bdread>=0.9"] = res["saver_vs_bdread"] >= 0.9
        if "backlog_ratios" in res:  # issue 11: the writer's own rate vs BLISS's writer
            checks[f"{short}_saver_vs_blisswriter_backlog>=1.5"] = \
                min(res["backlog_ratios"]) >= 1.5
        if "max_tick_gap_ms" in res.get("saver", {}):
            checks[f"{short}_max_tick_gap_ms<100"] = res["saver"]["max_tick_gap_ms"] < 100
    if "rss" in results:
        checks["rss_growth_mb<64"] = results["rss"]["growth_mb"] < 64
    for name, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'} {name}")

    def rounded(value):
        if isinstance(value, dict):
            return {k: rounded(v) for k, v in value.items()}
        return round(value, 3) if isinstance(value, float) else value

    print(json.dumps({"bench": "saving", "points": args.points, "spectra": args.spectra,
                      "spectra_per_push": args.spectra_per_push,
                      "dir": base or tempfile.gettempdir(), "repeat": args.repeat,
                      "rss_points": args.rss_points, "results": rounded(results),
                      "checks": checks, "pass": all(checks.values())}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
