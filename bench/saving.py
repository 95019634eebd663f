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
- ``h5py``: raw h5py appends of the same data in 64 MiB batches, then fsync as the saver
  does (the limit).

Rates are points (or MB) / (end - first publish). Workloads: 10 x 0d float64 channels
(100 points per push) and 2048-float32 spectra (10 per push). Then a long 0d scan
(``--rss-points``, one channel, 1000 points per push) through the saver, sampling its
RSS: "flat" means the peak stays near the level reached after the first 10 % of points.
The saver process also runs a greenlet ticking every 2 ms; its longest gap shows that
HDF5 work does not freeze the hub. Files go to ``--dir`` (default: a directory in
/dev/shm, so that the numbers measure the pipeline rather than a shared virtual disk whose
speed swings between 0.1 and 1 GB/s; pass ``--dir /some/disk/dir`` to include a disk).
Prints a table, ratios and a final JSON line::

    python bench/saving.py [--points 1000000] [--spectra 40000] [--rss-points 10000000]
                           [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.abspath(__file__)
WORKLOADS = {
    # name: (channels, point shape, dtype, points per push)
    "0d x10": (10, (), "float64", 100),
    "spectra 2048 f32": (1, (2048,), "float32", 100),  # --spectra-per-push
    "rss 0d x1": (1, (), "float64", 1000),
}


def _say(**msg) -> None:
    sys.stdout.write(json.dumps(msg) + "\n")
    sys.stdout.flush()


def _blocks(workload: str) -> tuple[list[str], list[np.ndarray]]:
    nch, shape, dtype, block = WORKLOADS[workload]
    rng = np.random.default_rng(0)
    names = [f"c{i}" for i in range(nch)]
    return names, [rng.random((block, *shape)).astype(dtype) for _ in names]


# ----------------------------------------------------------------------------- producer
def producer(url: str, mode: str, workload: str, npoints: int, session: str,
             path: str | None = None) -> None:
    names, blocks = _blocks(workload)
    pushes = npoints // len(blocks[0])
    if mode == "raw":
        import redis

        r = redis.Redis.from_url(url)
        r.ping()
        _say(event="ready")
        sys.stdin.readline()
        t0 = time.time()
        fields = {name: b.tobytes() for name, b in zip(names, blocks, strict=True)}
        for _ in range(pushes):
            r.xadd(f"raw:{session}", fields)
        r.xadd(f"raw:{session}", {"end": b"1"})
    else:
        from beacon_ipy.scans import StreamDescription, create_scan

        nch, shape, dtype, _ = WORKLOADS[workload]
        scan = create_scan(session, {"type": "bench", "title": f"bench {workload}",
                                     "npoints": npoints},
                           [StreamDescription.array(f"bench:{n}", dtype, shape)
                            for n in names],
                           redis_url=url, path=path)
        _say(event="ready")
        sys.stdin.readline()
        t0 = time.time()
        scan.start()
        data = {f"bench:{n}": b for n, b in zip(names, blocks, strict=True)}
        for _ in range(pushes):
            scan.push(data)
        scan.end()
    _say(event="done", t0=t0, t_done=time.time())


# ------------------------------------------------------------------------ saver process
def saver_role(url: str, session: str, directory: str) -> None:
    import faulthandler
    import signal

    import gevent
    import psutil

    faulthandler.register(signal.SIGUSR1, all_threads=True)  # stacks, if it ever hangs

    def greenlet_stacks(*_):
        from gevent.util import print_run_info
        print_run_info(file=sys.stderr)

    gevent.signal_handler(signal.SIGUSR2, greenlet_stacks)

    from beacon_ipy.saving import SessionSaver

    proc = psutil.Process()
    samples: list[tuple[int, int]] = []  # (points saved, rss)
    state = {"points": 0, "gap": 0.0}
    done = gevent.event.Event()

    def on_progress(status):
        state["points"] = status.points
        if status.state in ("saved", "failed"):
            state["status"] = status
            state["t"] = time.time()
            done.set()

    def sampler():
        while True:
            samples.append((state["points"], proc.memory_info().rss))
            gevent.sleep(0.02)

    def ticker():
        last = time.monotonic()
        while True:
            gevent.sleep(0.002)
            now = time.monotonic()
            state["gap"] = max(state["gap"], now - last)
            last = now

    saver = SessionSaver(session, directory, redis_url=url, on_progress=on_progress).start()
    saver.wait_ready(30)
    glets = [gevent.spawn(sampler), gevent.spawn(ticker)]
    _say(event="ready", rss=proc.memory_info().rss)
    cpu0 = proc.cpu_times()
    done.wait()
    cpu1 = proc.cpu_times()
    status = state["status"]
    saver.stop()
    gevent.killall(glets)
    _say(event="saved", t=state["t"], state=status.state, points=status.points,
         file=status.file, samples=samples, max_tick_gap_s=state["gap"],
         error=status.error, cpu_s=(cpu1.user - cpu0.user) + (cpu1.system - cpu0.system))


# ----------------------------------------------------------------------------- consumers
def consume(url: str, session: str, workload: str, h5path: str | None) -> tuple[int, float]:
    """XREAD until the end marker; with ``h5path``, append every block (the naive way)."""
    import redis

    names, blocks = _blocks(workload)
    nch, shape, dtype, block = WORKLOADS[workload]
    r = redis.Redis.from_url(url)
    h5 = datasets = None
    if h5path:
        import h5py

        h5 = h5py.File(h5path, "w")
        datasets = [h5.create_dataset(n, shape=(0, *shape), maxshape=(None, *shape),
                                      dtype=dtype, chunks=(max(1, 65536 // (np.dtype(dtype).itemsize
                                                                            * int(np.prod(shape)))),
                                                           *shape))
                    for n in names]
    key, last, points = f"raw:{session}", "0", 0
    keys = [n.encode() for n in names]
    while True:
        reply = r.xread({key: last}, count=1000, block=10_000)
        if not reply:
            raise RuntimeError("consumer: no data for 10 s")
        for entry_id, fields in reply[0][1]:
            if b"end" in fields:
                if h5 is not None:
                    h5.close()
                return points, time.time()
            last = entry_id
            for k, name in enumerate(keys):
                arr = np.frombuffer(fields[name], dtype=dtype).reshape((-1, *shape))
                if datasets is not None:
                    ds = datasets[k]
                    n = len(ds)
                    ds.resize(n + len(arr), axis=0)
                    ds[n:] = arr
            points += len(arr)


def consume_blissdata(url: str, session: str) -> tuple[int, float]:
    """blissdata's own reader: the session's next scan, every stream to its end."""
    from blissdata.exceptions import EndOfStream
    from blissdata.redis_engine.scan import ScanState
    from blissdata.streams import CursorGroup

    from beacon_ipy.scans.bdgaps import data_store

    store = data_store(url)
    since, keys = store.search_existing_scans(session=session)  # created before "go"
    key = keys[0] if keys else None
    if key is None:
        raise RuntimeError(f"bdread: no scan of session {session!r} in Redis")
    scan = store.load_scan(key)
    while scan.state < ScanState.PREPARED or (not scan.streams
                                              and scan.state < ScanState.CLOSED):
        scan.update(timeout=1)
        if scan.state >= ScanState.PREPARED and not scan.streams:
            scan = store.load_scan(key)  # the load race (NOTES §5)
    group = CursorGroup(scan.streams)
    points = 0
    while True:
        try:
            views = group.read(timeout=1)
        except EndOfStream:
            return points, time.time()
        for stream, view in views.items():
            if stream.name.endswith("c0"):
                points += len(view.get_data())
            else:
                view.get_data()


class BlissWriter:
    """BLISS's own writer, ``blisswriter run URL``, from its own virtualenv (optional:
    ``BEACON_IPY_BLISSWRITER_PYTHON`` or the cached env of tests/blisswriter_env.py)."""

    def __init__(self, url: str, session: str):
        import threading

        import psutil

        from beacon_ipy.scans import create_scan
        from beacon_ipy.scans.bdgaps import data_url

        self.lines: list[tuple[float, str]] = []
        self.proc = subprocess.Popen(
            [blisswriter_python(), "-c", "from blisswriter.cli import cli; cli()", "run",
             data_url(url), "--log-level", "INFO"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.ps = psutil.Process(self.proc.pid)
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + 60
        while True:  # it follows scans created once it listens: probe until it sees one
            with create_scan(session + "probe", {"type": "probe"}, redis_url=url) as probe:
                pass
            seen = time.monotonic() + 1.0
            while time.monotonic() < seen and not self._logged(probe.key):
                time.sleep(0.02)
            if self._logged(probe.key):
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("blisswriter did not start: " +
                                   "".join(line for _, line in self.lines[-20:]))
        self.cpu0 = self.ps.cpu_times()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append((time.time(), line))

    def _logged(self, text: str, also: str = "") -> float | None:
        for t, line in list(self.lines):
            if text in line and also in line:
                return t
        return None

    def wait_saved(self, timeout: float) -> tuple[float, float]:
        """(time its log said "Saving complete", its CPU seconds) for the bench's scan."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            t = self._logged("Saving complete")
            if t is not None:
                cpu = self.ps.cpu_times()
                return t, (cpu.user - self.cpu0.user) + (cpu.system - self.cpu0.system)
            if self.proc.poll() is not None:
                break
            time.sleep(0.005)
        raise RuntimeError("blisswriter did not save the scan: " +
                           "".join(line for _, line in self.lines[-20:]))

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _wait_points(path: str, npoints: int, timeout: float) -> float:
    """The time at which ``path`` holds ``npoints`` points in its first bench dataset."""

    deadline = time.monotonic() + timeout
    found = 0
    while time.monotonic() < deadline:
        try:
            found = _first_stream_length(path)
        except (OSError, KeyError):
            found = 0
        if found >= npoints:
            return time.time()
        time.sleep(0.05)
    raise RuntimeError(f"blisswriter's file {path} holds {found} of {npoints} points")


def _first_stream_length(path: str) -> int:
    import h5py

    sizes: list[int] = []

    def visit(name: str, obj) -> None:
        if isinstance(obj, h5py.Dataset) and obj.shape and name.endswith("c0"):
            sizes.append(len(obj))

    with h5py.File(path, "r", locking=False) as fh:
        fh.visititems(visit)
    return max(sizes, default=0)


def blisswriter_python() -> str:
    """The interpreter of a virtualenv with blisswriter 3.0.0 (built by the tests)."""
    found = os.environ.get("BEACON_IPY_BLISSWRITER_PYTHON")
    if found:
        return found
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "tests"))
    from blisswriter_env import blisswriter_python as build

    return build()


def h5py_limit(workload: str, npoints: int, path: str) -> float:
    """Seconds to append the same data with h5py in 64 MiB batches (and close)."""
    import h5py

    names, blocks = _blocks(workload)
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
    return subprocess.Popen([sys.executable, HERE, *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env)


def _line(proc: subprocess.Popen) -> dict:
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"bench helper {proc.args} exited with {proc.wait()}")
    return json.loads(line)


def run(url: str, mode: str, workload: str, npoints: int, session: str, tmp: str) -> dict:
    """One pipeline on one workload; returns rate and details."""
    import redis

    nbytes = npoints * len(_blocks(workload)[1]) * _blocks(workload)[1][0][0].nbytes
    per_push = str(WORKLOADS["spectra 2048 f32"][3])
    extra: dict = {}
    path_args: list[str] = []
    if mode == "saver-h5maps":  # the scan carries h5maps; nobody writes that path
        path_args = ["--path", os.path.join(tmp, "h5maps-src", session, f"{session}.h5")]
    if mode == "blisswriter":
        writer = BlissWriter(url, session)
        path = os.path.join(tmp, "blisswriter", session, f"{session}.h5")
        path_args = ["--path", path]
    prod = _spawn("--role", "producer", "--url", url, "--mode",
                  "raw" if mode in ("raw", "naive") else "api", "--workload", workload,
                  "--npoints", str(npoints), "--session", session,
                  "--spectra-per-push", per_push, *path_args)
    assert _line(prod)["event"] == "ready"
    if mode == "blisswriter":
        prod.stdin.write("go\n")
        prod.stdin.flush()
        try:
            t_end, cpu = writer.wait_saved(timeout=600)
            t_end = max(t_end, _wait_points(path, npoints, timeout=120))  # really all there
        finally:
            writer.close()
        extra = {"file_mb": os.path.getsize(path) / 1e6, "writer_cpu_s": cpu}
    elif mode in ("saver", "saver-h5maps"):
        sav = _spawn("--role", "saver", "--url", url, "--session", session, "--dir",
                     os.path.join(tmp, mode))
        ready = _line(sav)
        prod.stdin.write("go\n")
        prod.stdin.flush()
        result = _line(sav)
        sav.wait(30)
        if result["state"] != "saved" or result["points"] != npoints:
            raise RuntimeError(f"saver: {result['state']} {result['points']} {result['error']}")
        t_end = result["t"]
        rss = [r for _, r in result["samples"]]
        warm = [r for p, r in result["samples"] if p >= npoints // 10] or rss
        extra = {"rss_start_mb": ready["rss"] / 1e6, "rss_after_10pct_mb": warm[0] / 1e6,
                 "rss_peak_mb": max(rss) / 1e6, "max_tick_gap_ms": result["max_tick_gap_s"] * 1e3,
                 "file_mb": os.path.getsize(result["file"]) / 1e6,
                 "saver_cpu_s": result["cpu_s"]}
    elif mode == "bdread":
        prod.stdin.write("go\n")
        prod.stdin.flush()
        points, t_end = consume_blissdata(url, session)
        if points != npoints:
            raise RuntimeError(f"{mode}: got {points} points of {npoints}")
    else:
        prod.stdin.write("go\n")
        prod.stdin.flush()
        h5path = os.path.join(tmp, f"naive-{session}.h5") if mode == "naive" else None
        points, t_end = consume(url, session, workload, h5path)
        if points != npoints:
            raise RuntimeError(f"{mode}: got {points} points of {npoints}")
    done = _line(prod)
    prod.wait(30)
    client = redis.Redis.from_url(url)
    for key in client.scan_iter("raw:*"):
        client.delete(key)
    for key in client.scan_iter("esrf:stream:*"):  # the scans' data (the index stays)
        client.delete(key)
    elapsed = t_end - done["t0"]
    return {"points_per_s": npoints / elapsed, "mb_per_s": nbytes / elapsed / 1e6,
            "elapsed_s": elapsed, "producer_s": done["t_done"] - done["t0"],
            "drain_s": t_end - done["t_done"], **extra}


def main() -> int:
    parser = argparse.ArgumentParser(description="saving: saver vs naive vs raw transport")
    parser.add_argument("--role", default="bench", choices=["bench", "producer", "saver"])
    parser.add_argument("--url")
    parser.add_argument("--mode")
    parser.add_argument("--workload", choices=list(WORKLOADS))
    parser.add_argument("--npoints", type=int)
    parser.add_argument("--session")
    parser.add_argument("--path", help="producer: the scan's data file (h5maps)")
    parser.add_argument("--blisswriter", action=argparse.BooleanOptionalAction, default=True,
                        help="also time BLISS's writer on the same scans (issue 11's target)")
    parser.add_argument("--dir", help="where files are written (default: /dev/shm)")
    parser.add_argument("--points", type=int, default=1_000_000, help="0d points (10 channels)")
    parser.add_argument("--spectra", type=int, default=40_000, help="2048-float32 spectra")
    parser.add_argument("--rss-points", type=int, default=10_000_000,
                        help="points of the long 0d scan for the RSS check (0 = skip)")
    parser.add_argument("--spectra-per-push", type=int, default=100)
    args = parser.parse_args()
    WORKLOADS["spectra 2048 f32"] = (1, (2048,), "float32", args.spectra_per_push)
    if args.role == "producer":
        producer(args.url, args.mode, args.workload, args.npoints, args.session, args.path)
        return 0
    if args.role == "saver":
        saver_role(args.url, args.session, args.dir)
        return 0

    from beacon_ipy.connection.private import PrivateRedis

    base = args.dir or ("/dev/shm" if os.path.isdir("/dev/shm") else None)
    tmp = tempfile.mkdtemp(prefix="bipy-bench-saving-", dir=base)
    results: dict[str, dict] = {}
    try:
        with PrivateRedis() as server:
            print(f"redis-server on {server.url}; files in {tmp}")
            print(f"{'workload':<18} {'pipeline':<12} {'points/s':>12} {'MB/s':>8} "
                  f"{'elapsed s':>9} {'producer s':>10} {'drain s':>8}")
            k = 0
            for workload, npoints in (("0d x10", args.points),
                                      ("spectra 2048 f32", args.spectra)):
                res = {}
                modes = ["raw", "naive", "bdread", "saver", "saver-h5maps"]
                if args.blisswriter:
                    modes.append("blisswriter")
                for mode in modes:
                    k += 1
                    res[mode] = run(server.url, mode, workload, npoints, f"b{k}", tmp)
                t = h5py_limit(workload, npoints, os.path.join(tmp, f"limit{k}.h5"))
                nbytes = npoints * WORKLOADS[workload][0] * np.dtype(
                    WORKLOADS[workload][2]).itemsize * int(np.prod(WORKLOADS[workload][1]))
                res["h5py"] = {"points_per_s": npoints / t, "mb_per_s": nbytes / t / 1e6,
                               "elapsed_s": t}
                for mode, r in res.items():
                    print(f"{workload:<18} {mode:<12} {r['points_per_s']:>12,.0f} "
                          f"{r['mb_per_s']:>8.1f} {r['elapsed_s']:>9.2f} "
                          f"{r.get('producer_s', 0):>10.2f} {r.get('drain_s', 0):>8.2f}")
                s = res["saver"]
                print(f"{'':<18} saver/naive = {s['points_per_s'] / res['naive']['points_per_s']:.2f}"
                      f"  saver/raw = {s['points_per_s'] / res['raw']['points_per_s']:.2f}"
                      f"  saver/bdread = {s['points_per_s'] / res['bdread']['points_per_s']:.2f}"
                      f"  saver/h5py = {s['points_per_s'] / res['h5py']['points_per_s']:.2f}"
                      f"  max tick gap {s['max_tick_gap_ms']:.1f} ms"
                      f"  RSS peak {s['rss_peak_mb']:.0f} MB  saver CPU {s['saver_cpu_s']:.2f} s")
                results[workload] = {m: {key: round(v, 3) for key, v in r.items()}
                                     for m, r in res.items()}
                results[workload]["saver_vs_naive"] = round(
                    s["points_per_s"] / res["naive"]["points_per_s"], 3)
                results[workload]["saver_vs_raw"] = round(
                    s["points_per_s"] / res["raw"]["points_per_s"], 3)
                results[workload]["saver_vs_bdread"] = round(
                    s["points_per_s"] / res["bdread"]["points_per_s"], 3)
                sh = res["saver-h5maps"]
                results[workload]["h5maps_vs_saver"] = round(
                    sh["points_per_s"] / s["points_per_s"], 3)
                print(f"{'':<18} saver-h5maps/saver = "
                      f"{sh['points_per_s'] / s['points_per_s']:.2f}  lag after the producer "
                      f"{sh['drain_s']:.2f} s")
                if "blisswriter" in res:
                    bw = res["blisswriter"]
                    results[workload]["h5maps_vs_blisswriter"] = round(
                        sh["points_per_s"] / bw["points_per_s"], 3)
                    results[workload]["saver_vs_blisswriter"] = round(
                        s["points_per_s"] / bw["points_per_s"], 3)
                    print(f"{'':<18} saver/blisswriter = "
                          f"{s['points_per_s'] / bw['points_per_s']:.2f}  lag after the "
                          f"producer: saver {s['drain_s']:.2f} s, blisswriter "
                          f"{bw['drain_s']:.2f} s  (CPU {s['saver_cpu_s']:.2f} vs "
                          f"{bw['writer_cpu_s']:.2f} s)")
            if args.rss_points:
                k += 1
                r = run(server.url, "saver", "rss 0d x1", args.rss_points, f"b{k}", tmp)
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
    zero, spec = results["0d x10"], results["spectra 2048 f32"]
    checks = {
        # on blissdata scans the floor is blissdata's own reader of the same scans
        "0d_saver_vs_bdread>=0.9": zero["saver_vs_bdread"] >= 0.9,
        "spectra_saver_vs_bdread>=0.9": spec["saver_vs_bdread"] >= 0.9,
    }
    if "rss" in results:
        checks["rss_growth_mb<64"] = results["rss"]["growth_mb"] < 64
    for name, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'} {name}")
    print(json.dumps({"bench": "saving", "points": args.points, "spectra": args.spectra,
                      "spectra_per_push": args.spectra_per_push, "dir": base or tempfile.gettempdir(),
                      "rss_points": args.rss_points, "results": results, "checks": checks,
                      "pass": all(checks.values())}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
