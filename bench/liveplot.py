"""Live-plot benchmark: does a LivePlot keep up with fast scans, and what does it cost?

One private redis-server; a producer subprocess publishes a paced scan through the
public producer API; this process follows it. Workloads:

- ``0d 1kHz``: 5 x 0d float64 channels (elapsed time as master axis, epoch, 3 counters)
  at 1000 points/s, pushed in blocks of 10 points every 10 ms.
- ``spectrum 100Hz``: one 2048-float32 MCA spectrum (+ elapsed time and epoch) at 100
  points/s, one point per push.
- ``mesh 1kHz``: a BLISS-shaped ``amesh`` of 100 x 100 points (scan_info ``plots``
  scatter hint, axes with ``axis_points``/``axis_id``/``start``/``stop``, as BLISS's
  ``ScanInfo`` builds them): 2 motor channels, elapsed time, epoch, 1 counter at 1000
  points/s in blocks of 10; the plot fills the mesh image as points arrive.
- ``lima 50Hz``: a 2D detector writing 256 x 256 uint16 frames to HDF5 (SWMR, the demo's
  simulated Lima) at 50 frames/s, one reference per frame in the scan (+ elapsed time,
  epoch); the plot reads the newest frame from the file at most once per redraw
  (``frames read`` <= redraws).

For each workload, side by side in this process:

- ``walk only`` (the reference): a bare ``walk_on_new_events`` consumer, no plot.
- ``agg``: ``LivePlot(backend="agg")``, rendering in gevent's threadpool.
- ``ipympl``: ``LivePlot(backend="ipympl")`` outside a kernel (the comm is ipywidgets'
  dummy), told that a front end is there (ipympl's ``initialized`` message): same
  drawing plus ipympl's PNG encoding of each frame (diff against the previous one), i.e.
  the kernel-side cost without the zmq send.

Measured while the scan runs: redraws per second (and the shortest interval between two
redraws), ingestion lag (seconds between a point's epoch and the moment it was ingested,
sampled every 50 ms; "events behind" = lag x rate), RSS growth from 25 % of the scan to
its end, and responsiveness: lateness of a concurrent greenlet that sleeps 10 ms in a
loop (p50 / p99 / max), which is what a kernel's own work (cells, widgets, channels)
would see. Ratios are against ``walk only``. Final JSON line. Usage::

    python bench/liveplot.py [--duration 10] [--only 0d|spectrum] [--backends agg,ipympl]
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
    # name: (points per second, points per push, spectrum bins or 0)
    "0d": (1000, 10, 0),
    "spectrum": (100, 1, 2048),
    "mesh": (1000, 10, "mesh"),
    "lima": (50, 1, "lima"),
}
MESH_SIDE = 100
FRAME_SHAPE = (256, 256)
TICK = 0.01


def _say(**msg) -> None:
    sys.stdout.write(json.dumps(msg) + "\n")
    sys.stdout.flush()


# ------------------------------------------------------------------------- producer role
def producer(url: str, session: str, workload: str, duration: float) -> None:
    import gevent

    from beacon_ipy.scans import ChannelSpec, create_scan

    rate, block, kind = WORKLOADS[workload]
    bins = kind if isinstance(kind, int) else 0
    npoints = int(rate * duration)
    channels = [ChannelSpec("timer:elapsed_time", unit="s"), ChannelSpec("timer:epoch", unit="s")]
    if kind == "mesh":
        return mesh_producer(url, session, duration, channels)
    if kind == "lima":
        return lima_producer(url, session, duration, channels)
    if bins:
        channels.append(ChannelSpec("mca:spectrum", "float32", (bins,), unit="counts"))
    else:
        channels += [ChannelSpec(f"det:c{i}", unit="counts") for i in range(3)]
    info = {"type": "timescan", "title": f"bench {workload}", "npoints": npoints,
            "acquisition_chain": {"timer": {"master": {"scalars": ["timer:elapsed_time"],
                                                       "units": {"timer:elapsed_time": "s"}}}}}
    rng = np.random.default_rng(0)
    spectrum = rng.poisson(5.0, bins).astype(np.float32) if bins else None
    scan = create_scan(session, info, channels, redis_url=url)
    scan.start()
    _say(event="started", scan_nb=scan.scan_nb)
    t0 = time.time()
    sent = 0
    while sent < npoints:
        n = min(block, npoints - sent)
        idx = np.arange(sent, sent + n)
        now = time.time()
        data = {"timer:elapsed_time": idx / rate, "timer:epoch": np.full(n, now)}
        if bins:
            data["mca:spectrum"] = np.tile(spectrum, (n, 1)) + idx[:, None] % 7
        else:
            for i in range(3):
                data[f"det:c{i}"] = np.sin(idx / 500.0 + i) * 100 + rng.normal(0, 5, n)
        scan.push(data)
        sent += n
        gevent.sleep(max(0.0, t0 + sent / rate - time.time()))  # pacing
    scan.end("SUCCESS")
    _say(event="done", points=sent, elapsed=time.time() - t0)


def paced(rate: float, npoints: int, block: int, push) -> int:
    """Call ``push(first, n)`` for blocks of points at ``rate`` points/s; returns the count."""
    import gevent

    t0 = time.time()
    sent = 0
    while sent < npoints:
        n = min(block, npoints - sent)
        push(sent, n)
        sent += n
        gevent.sleep(max(0.0, t0 + sent / rate - time.time()))
    return sent


def mesh_producer(url: str, session: str, duration: float, channels: list) -> None:
    """A BLISS-shaped amesh (hints and axis metadata as ScanInfo.set_channel_meta /
    add_scatter_plot write them), 1000 points/s."""
    from beacon_ipy.scans import ChannelSpec, create_scan

    rate, block, _ = WORKLOADS["mesh"]
    side = MESH_SIDE
    npoints = min(side * side, int(rate * duration))
    axes = ["axis:sx", "axis:sy"]
    channels = [ChannelSpec(a, unit="mm") for a in axes] + channels + [
        ChannelSpec("det:c0", unit="counts")]
    meta = {a: {"start": 0.0, "stop": 1.0, "points": side * side, "axis_id": i,
                "axis_points": side, "axis_kind": "forth", "group": "scatter", "unit": "mm"}
            for i, a in enumerate(axes)}
    info = {"type": "amesh", "title": "bench mesh", "npoints": side * side, "data_dim": 2,
            "channels": meta,
            "plots": [{"kind": "scatter-plot", "items": [{"kind": "scatter", "x": axes[0],
                                                          "y": axes[1]}]}],
            "acquisition_chain": {"axis": {"scalars": ["timer:elapsed_time", "timer:epoch",
                                                       "det:c0"],
                                           "master": {"scalars": axes}}}}
    scan = create_scan(session, info, channels, redis_url=url)
    scan.start()
    _say(event="started", scan_nb=scan.scan_nb)
    grid = np.linspace(0.0, 1.0, side)
    t0 = time.time()

    def push(first: int, n: int) -> None:
        idx = np.arange(first, first + n)
        sx, sy = grid[idx % side], grid[idx // side]
        scan.push({"axis:sx": sx, "axis:sy": sy, "timer:elapsed_time": idx / rate,
                   "timer:epoch": np.full(n, time.time()),
                   "det:c0": 1000 * np.exp(-((sx - 0.5) ** 2 + (sy - 0.4) ** 2) / 0.05)})

    sent = paced(rate, npoints, block, push)
    scan.end("SUCCESS")
    _say(event="done", points=sent, elapsed=time.time() - t0)


def lima_producer(url: str, session: str, duration: float, channels: list) -> None:
    """A 2D detector (the demo's simulated Lima: HDF5, SWMR) at 50 frames/s."""
    import tempfile

    from beacon_ipy.demo.detector import SimDetector2D
    from beacon_ipy.scans import LimaSpec, create_scan

    rate, block, _ = WORKLOADS["lima"]
    npoints = int(rate * duration)
    name = "cam:image"
    info = {"type": "timescan", "title": "bench lima", "npoints": npoints,
            "acquisition_chain": {"timer": {"scalars": ["timer:epoch"], "images": [name],
                                            "master": {"scalars": ["timer:elapsed_time"]}}}}
    channels = channels + [LimaSpec(name, "uint16", FRAME_SHAPE, unit="counts")]
    rng = np.random.default_rng(0)
    frames = rng.poisson(50, (8, *FRAME_SHAPE)).astype(np.uint16)
    with tempfile.TemporaryDirectory(prefix="lpbench-lima-") as tmp:
        det = SimDetector2D("cam", FRAME_SHAPE, frames_per_file=1000)
        det.prepare(tmp)
        scan = create_scan(session, info, channels, redis_url=url)
        scan.start()
        _say(event="started", scan_nb=scan.scan_nb)
        t0 = time.time()

        def push(first: int, n: int) -> None:
            file, path, index = det.save(frames[first % len(frames)])
            scan.push_images(name, file, path, index)
            scan.push({"timer:elapsed_time": first / rate, "timer:epoch": time.time()})

        sent = paced(rate, npoints, block, push)
        scan.end("SUCCESS")
        det.close()
        _say(event="done", points=sent, elapsed=time.time() - t0)
        # the files stay until the consumer said it drew the last frame
        sys.stdin.readline()


# ------------------------------------------------------------------------- consumer side
def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


class Probe:
    """A greenlet sleeping TICK in a loop (its lateness) and a sampler (lag, RSS)."""

    def __init__(self, last_epoch):
        import gevent

        self.late: list[float] = []
        self.lags: list[tuple[float, float]] = []  # (when, lag)
        self.rss: list[tuple[float, float]] = []
        self._last_epoch = last_epoch
        self._run = True
        self._greenlets = [gevent.spawn(self._tick), gevent.spawn(self._sample)]

    def _tick(self) -> None:
        import gevent

        while self._run:
            t = time.perf_counter()
            gevent.sleep(TICK)
            self.late.append(time.perf_counter() - t - TICK)

    def _sample(self) -> None:
        import gevent

        while self._run:
            epoch = self._last_epoch()
            if epoch is not None:
                self.lags.append((time.monotonic(), time.time() - epoch))
            self.rss.append((time.monotonic(), rss_mb()))
            gevent.sleep(0.05)

    def stop(self) -> None:
        import gevent

        self._run = False
        gevent.joinall(self._greenlets, timeout=2)


def one_run(url: str, workload: str, consumer: str, duration: float, run_id: int) -> dict:
    import gevent
    import gevent.event

    from beacon_ipy.scans import StopHandler, get_session_node

    session = f"lpbench{run_id}"
    rate = WORKLOADS[workload][0]
    plot = None
    state: dict = {"epoch": None, "ended": gevent.event.Event(), "points": 0}
    if consumer == "walk only":
        stop = StopHandler()
        started = gevent.event.Event()

        def walk():
            for kind, node, data in get_session_node(session, url).walk_on_new_events(
                    ("scan", "channel"), from_next=True, stop_handler=stop,
                    started_event=started):
                if kind == "NEW_DATA" and node.name == "timer:epoch":
                    state["epoch"] = float(data.data[-1])
                    state["points"] = data.stop
                elif kind == "END_SCAN":
                    state["ended"].set()

        walker = gevent.spawn(walk)
        started.wait(10)

        def last_epoch():
            return state["epoch"]
    else:
        from beacon_ipy.jupyter.liveplot import LivePlot

        plot = LivePlot(session, backend=consumer, include_last=False, redis_url=url)
        if consumer == "ipympl":
            # What a browser sends once the canvas is shown: from then on ipympl stops
            # syncing a base64 PNG copy of each frame in the widget state.
            with plot.view.lock:
                plot.widget._handle_message(plot.widget, {"type": "initialized"}, [])

        def last_epoch():
            model = plot.current_model()
            return model.columns.last("timer:epoch") if model is not None else None

    probe = Probe(last_epoch)
    proc = subprocess.Popen([sys.executable, HERE, "--role", "producer", "--url", url,
                             "--session", session, "--workload", workload,
                             "--duration", str(duration)], stdout=subprocess.PIPE,
                            stdin=subprocess.PIPE, text=True)
    from gevent.fileobject import FileObjectThread

    out = FileObjectThread(proc.stdout)
    started_msg = json.loads(out.readline())
    t_start = time.monotonic()
    done = json.loads(out.readline())
    t_end = time.monotonic()
    if plot is not None:
        nb = started_msg["scan_nb"]
        plot.wait_drawn(nb, ended=True, timeout=60)
        caught_up = time.monotonic() - t_end
        starts = [t for t in plot.draw_starts if t_start <= t <= t_end]
        stats = plot.draw_stats()
        points = plot.models[nb].points
    else:
        state["ended"].wait(60)
        caught_up = time.monotonic() - t_end
        starts, stats, points = [], {}, state["points"]
    probe.stop()
    try:  # the lima producer keeps its files until then
        proc.stdin.write("bye\n")
        proc.stdin.close()
    except BrokenPipeError:  # the other producers are gone already
        pass
    proc.wait(10)
    if plot is not None:
        plot.close()
    else:
        stop.stop()
        walker.join(5)
    late = np.array(probe.late) * 1e3
    span = t_end - t_start
    # while the scan runs (after its first tenth: the walk's start-up)
    lags = np.array([lag for t, lag in probe.lags if t_start + span / 10 <= t <= t_end])
    quarter = t_start + span / 4
    rss_q = next((r for t, r in probe.rss if t >= quarter), probe.rss[0][1])
    rss_end = next((r for t, r in reversed(probe.rss) if t <= t_end), probe.rss[-1][1])
    return {
        "workload": workload, "consumer": consumer, "points": points,
        "published": done["points"], "scan_s": round(span, 2),
        "redraws_per_s": round(len(starts) / span, 2) if starts else 0.0,
        "min_redraw_interval_s": round(float(np.diff(starts).min()), 3)
        if len(starts) > 1 else None,
        "draw_ms_mean": stats.get("draw_ms_mean"),
        "full_draws": stats.get("full_draws"),
        "full_draw_ms_mean": stats.get("full_draw_ms_mean"),
        "blit_draw_ms_mean": stats.get("blit_draw_ms_mean"),
        "lag_ms_p50": round(float(np.median(lags)) * 1e3, 1) if len(lags) else None,
        "lag_ms_max": round(float(lags.max()) * 1e3, 1) if len(lags) else None,
        "events_behind_max": round(float(lags.max()) * rate, 1) if len(lags) else None,
        "final_frame_after_end_s": round(caught_up, 3),
        "rss_growth_mb": round(rss_end - rss_q, 2),
        "buffer_kb": round(stats.get("buffer_bytes", 0) / 1e3, 1),
        "frames_read": stats.get("frames_read"),
        "tick_late_ms_p50": round(float(np.median(late)), 2),
        "tick_late_ms_p99": round(float(np.percentile(late, 99)), 2),
        "tick_late_ms_max": round(float(late.max()), 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description="live plots under fast scans")
    parser.add_argument("--role", default="bench", choices=["bench", "producer"])
    parser.add_argument("--url")
    parser.add_argument("--session")
    parser.add_argument("--workload", choices=list(WORKLOADS))
    parser.add_argument("--duration", type=float, default=10.0,
                        help="seconds each scan runs (default 10)")
    parser.add_argument("--only", choices=list(WORKLOADS), action="append",
                        help="run only this workload (repeatable)")
    parser.add_argument("--backends", default="agg,ipympl",
                        help="comma-separated LivePlot backends to measure (default agg,ipympl)")
    args = parser.parse_args()
    if args.role == "producer":
        producer(args.url, args.session, args.workload, args.duration)
        return 0

    from beacon_ipy.connection.private import PrivateRedis

    consumers = ["walk only"] + [b.strip() for b in args.backends.split(",") if b.strip()]
    results = []
    with PrivateRedis() as server:
        run_id = 0
        for workload in args.only or list(WORKLOADS):
            for consumer in consumers:
                run_id += 1
                res = one_run(server.url, workload, consumer, args.duration, run_id)
                results.append(res)
                print(f"{workload:9} {consumer:9}  redraw {res['redraws_per_s']:5.2f}/s "
                      f"(min interval {res['min_redraw_interval_s']}, draw "
                      f"{res['draw_ms_mean']} ms: {res['full_draws']} full "
                      f"{res['full_draw_ms_mean']} ms, blit {res['blit_draw_ms_mean']} ms)"
                      f"  lag p50 {res['lag_ms_p50']} ms max "
                      f"{res['lag_ms_max']} ms ({res['events_behind_max']} pts)  final "
                      f"frame {res['final_frame_after_end_s']} s after end  RSS "
                      f"+{res['rss_growth_mb']} MB  tick late p50/p99/max "
                      f"{res['tick_late_ms_p50']}/{res['tick_late_ms_p99']}/"
                      f"{res['tick_late_ms_max']} ms"
                      + (f"  frames read {res['frames_read']}" if res["frames_read"] else ""),
                      flush=True)
    ratios = {}
    for res in results:
        if res["consumer"] == "walk only":
            continue
        ref = next(r for r in results
                   if r["workload"] == res["workload"] and r["consumer"] == "walk only")
        key = f"{res['workload']}/{res['consumer']}"
        ratios[key] = {
            "tick_p99_vs_walk": round(res["tick_late_ms_p99"] / max(ref["tick_late_ms_p99"],
                                                                     1e-3), 2),
            "lag_p50_vs_walk": round((res["lag_ms_p50"] or 0) / max(ref["lag_ms_p50"] or 0,
                                                                      1e-3), 2),
            "redraw_rate_vs_10hz": round(res["redraws_per_s"] / 10.0, 2),
        }
        print(f"ratios {key}: {ratios[key]}")
    print(json.dumps({"bench": "liveplot", "duration_s": args.duration, "results": results,
                      "ratios": ratios}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
