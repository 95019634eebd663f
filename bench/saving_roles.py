"""The helper processes and pipelines of ``bench/saving.py`` (one module, one role each).

``python bench/saving_roles.py --role producer|saver ...`` runs a helper process; the
bench imports the rest (the in-process consumers, BLISS's writer as a subprocess).
Each helper prints JSON lines on stdout and waits for a line on stdin where it says so.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.abspath(__file__)
WORKLOADS = {
    # name: (channels, point shape, dtype, points per push)
    "0d x10": (10, (), "float64", 100),
    "spectra 2048 f32": (1, (2048,), "float32", 100),  # --spectra-per-push
    "rss 0d x1": (1, (), "float64", 1000),
}


def say(**msg) -> None:
    sys.stdout.write(json.dumps(msg) + "\n")
    sys.stdout.flush()


def blocks_of(workload: str) -> tuple[list[str], list[np.ndarray]]:
    nch, shape, dtype, block = WORKLOADS[workload]
    rng = np.random.default_rng(0)
    names = [f"c{i}" for i in range(nch)]
    return names, [rng.random((block, *shape)).astype(dtype) for _ in names]


# ----------------------------------------------------------------------------- producer
def producer(url: str, mode: str, workload: str, npoints: int, session: str,
             path: str | None = None) -> None:
    names, blocks = blocks_of(workload)
    pushes = npoints // len(blocks[0])
    if mode == "raw":
        import redis

        r = redis.Redis.from_url(url)
        r.ping()
        say(event="ready")
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
        say(event="ready")
        sys.stdin.readline()
        t0 = time.time()
        scan.start()
        data = {f"bench:{n}": b for n, b in zip(names, blocks, strict=True)}
        for _ in range(pushes):
            scan.push(data)
        scan.end()
    say(event="done", t0=t0, t_done=time.time())


# ------------------------------------------------------------------------ saver process
def saver_role(url: str, session: str, directory: str, compression: str | None = None) -> None:
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

    saver = SessionSaver(session, directory, redis_url=url, on_progress=on_progress,
                         compression=compression).start()
    saver.wait_ready(30)
    glets = [gevent.spawn(sampler), gevent.spawn(ticker)]
    say(event="ready", rss=proc.memory_info().rss)
    cpu0 = proc.cpu_times()
    done.wait()
    cpu1 = proc.cpu_times()
    status = state["status"]
    saver.stop()
    gevent.killall(glets)
    say(event="saved", t=state["t"], state=status.state, points=status.points,
         file=status.file, samples=samples, max_tick_gap_s=state["gap"],
         error=status.error, cpu_s=(cpu1.user - cpu0.user) + (cpu1.system - cpu0.system))


# ----------------------------------------------------------------------------- consumers
def consume(url: str, session: str, workload: str, h5path: str | None) -> tuple[int, float]:
    """XREAD until the end marker; with ``h5path``, append every block (the naive way)."""
    import redis

    names, blocks = blocks_of(workload)
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


def wait_points(path: str, npoints: int, timeout: float) -> float:
    """The time at which ``path`` holds ``npoints`` points in its first bench dataset."""

    deadline = time.monotonic() + timeout
    found = 0
    while time.monotonic() < deadline:
        try:
            found = first_stream_length(path)
        except (OSError, KeyError):
            found = 0
        if found >= npoints:
            return time.time()
        time.sleep(0.05)
    raise RuntimeError(f"blisswriter's file {path} holds {found} of {npoints} points")


def first_stream_length(path: str) -> int:
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



def main() -> int:
    parser = argparse.ArgumentParser(description="bench/saving.py's helper processes")
    parser.add_argument("--role", required=True, choices=["producer", "saver"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--mode")
    parser.add_argument("--workload", choices=list(WORKLOADS))
    parser.add_argument("--npoints", type=int)
    parser.add_argument("--session", required=True)
    parser.add_argument("--path", help="producer: the scan's data file (h5maps)")
    parser.add_argument("--dir", help="saver: where files are written")
    parser.add_argument("--compression", choices=["gzip", "lzf"], help="saver: compression")
    parser.add_argument("--spectra-per-push", type=int, default=100)
    args = parser.parse_args()
    WORKLOADS["spectra 2048 f32"] = (1, (2048,), "float32", args.spectra_per_push)
    if args.role == "producer":
        producer(args.url, args.mode, args.workload, args.npoints, args.session, args.path)
    else:
        saver_role(args.url, args.session, args.dir, args.compression)
    return 0


if __name__ == "__main__":
    sys.exit(main())
