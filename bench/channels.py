"""Channel benchmark: beacon-ipy vs raw redis-py pub/sub (and real BLISS with --bliss).

One run, one private redis-server, side by side:

- ping-pong RTT between two processes: raw redis-py PUBLISH/SUBSCRIBE (the floor), then
  beacon-ipy ``Channel`` (A sets ``ping``; B's callback sets ``pong``; A's callback wakes);
- a fresh ``Channel(name).value`` getting a value a peer holds;
- a fresh channel falling back to ``default_value`` with nobody holding it;
- ``EventChannel`` throughput: events posted in a loop (batched by the bus) and one event
  per message, counted and order-checked by the receiving process (zero loss required).

With ``--bliss PYTHON`` (an interpreter with BLISS 2.4 installed, e.g. the one the test
suite builds: ``python tests/bliss_env.py`` prints it) the same measurements run with two
BLISS processes.

**Ping-pong in interleaved repetitions**: one process pair per contender (raw floor, raw
floor with echo, beacon-ipy plain, beacon-ipy gevent-patched, BLISS) stays up on channels
of its own; each of ``--reps`` repetitions runs ``--rounds`` round trips of every
contender in turn (the order rotates), so all see the same load within seconds. The raw
floor itself swings by 1.5x between minutes on a shared VM: ratios are taken *per
repetition* (contender p50 / raw p50 of the same repetition) and reported as their
median, with min and max; latencies are medians of the per-repetition p50s.

Prints a table, ratios, and a final JSON line. Usage::

    python bench/channels.py [--rounds 2000] [--reps 5] [--events 2000000]
                             [--bliss PYTHON] [--profile DIR]

Every beacon-ipy measurement runs in plain processes ("beacon") and in
gevent-monkey-patched ones ("beacon_patched", as BLISS processes are). The helper
processes are the roles of ``bench/channel_roles.py``. ``--profile DIR`` writes cProfile
stats of the ping-pong processes (``pong-*.prof``, ``pingpong-*.prof``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.abspath(__file__)
ROLES = os.path.join(os.path.dirname(HERE), "channel_roles.py")


# ----------------------------------------------------------------------------- helpers
def _stats_median(results: list[dict], metric: str) -> float:
    return round(statistics.median(r[metric] for r in results), 1)


def _spawn(python: str, role: str, url: str, *args: str,
           patched: bool = False) -> subprocess.Popen:
    """A helper process (:mod:`channel_roles`); ``patched``: it calls
    ``gevent.monkey.patch_all()`` first."""
    env = dict(os.environ, BEACON_REDIS_URL=url, PYTHONUNBUFFERED="1",
               BENCH_MONKEY_PATCH="1" if patched else "0")
    return subprocess.Popen([python, ROLES, role, url, *args],
                            stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True, env=env)


def _line(proc: subprocess.Popen) -> dict:
    """Next JSON line from a helper process (cooperative if gevent is in use)."""
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"bench helper {proc.args} exited with {proc.wait()}")
    return json.loads(line)


# ------------------------------------------------------------------------------ main
#: ping-pong contenders: key -> (interpreter key, pong role, driving role, args, patched)
CONTENDERS = {
    "raw": ("self", "raw-pong", "raw-pingpong", ("bench:raw", "0"), False),
    "raw_echo": ("self", "raw-pong", "raw-pingpong", ("bench:rawecho", "1"), False),
    "beacon": ("self", "pong", "pingpong", ("beacon", "bench:plain"), False),
    "beacon_patched": ("self", "pong", "pingpong", ("beacon", "bench:patched"), True),
    "bliss": ("bliss", "pong", "pingpong", ("bliss", "bench:bliss"), False),
}


def bench_pingpong(url: str, rounds: int, reps: int, bliss: str | None) -> dict:
    """Interleaved repetitions of every contender's ping-pong (see the module docstring)."""
    pythons = {"self": sys.executable, "bliss": bliss}
    pairs = {}
    try:
        for key, (py, pong_role, drive_role, args, patched) in CONTENDERS.items():
            if pythons[py] is None:
                continue
            pong = _spawn(pythons[py], pong_role, url, *args, patched=patched)
            _line(pong)
            driver = _spawn(pythons[py], drive_role, url, *args, patched=patched)
            _line(driver)
            pairs[key] = (pong, driver)
        runs: dict[str, list[dict]] = {key: [] for key in pairs}
        keys = list(pairs)
        for rep in range(reps):
            for key in keys[rep % len(keys):] + keys[:rep % len(keys)]:
                driver = pairs[key][1]
                driver.stdin.write(f"{rounds}\n")
                driver.stdin.flush()
                runs[key].append(_line(driver)["results"])
    finally:
        for pong, driver in pairs.values():
            for p in (driver, pong):
                p.stdin.close()
                if p.args[2] == "raw-pong":  # blocks in a read forever
                    p.kill()
                p.wait(timeout=10)
    out = {}
    for key, results in runs.items():
        out[key] = {m: _stats_median(results, m) for m in ("p50_us", "p99_us", "cpu_us")}
        out[key]["p50_us_per_rep"] = [r["p50_us"] for r in results]
        out[key]["n"] = sum(r["n"] for r in results)
    return out


def rep_ratios(pingpong: dict, key: str, floor: str = "raw") -> dict:
    """Per-repetition ``key`` p50 / ``floor`` p50: median, min, max, and the list."""
    per_rep = [round(a / b, 2) for a, b in zip(pingpong[key]["p50_us_per_rep"],
                                              pingpong[floor]["p50_us_per_rep"], strict=True)]
    return {"median": round(statistics.median(per_rep), 2), "min": min(per_rep),
            "max": max(per_rep), "per_rep": per_rep}


def bench_impl(python: str, kind: str, url: str, events: int,
               patched: bool = False) -> dict:
    holders = int(os.environ.get("BENCH_HELD", "300"))
    holder = _spawn(python, "holder", url, kind, str(holders), patched=patched)
    receiver = _spawn(python, "events-receiver", url, kind, str(events), patched=patched)
    for p in (holder, receiver):
        _line(p)
    driver = _spawn(python, "driver", url, kind, str(events), patched=patched)
    results = _line(driver)["results"]
    posted = _line(driver)
    done = _line(receiver)
    dt = done["t_last"] - posted["t0"]
    results["events_batched"] = {
        "events_per_s": round(events / dt), "received": done["received"],
        "lost": events - done["received"], "out_of_order": done["out_of_order"],
        "messages": done["messages"]}
    for p in (driver, holder, receiver):
        p.stdin.close()
        p.wait(timeout=10)
    results["events_single"] = bench_single_events(python, kind, url, patched=patched)
    return results


def bench_single_events(python: str, kind: str, url: str, n: int = 5000,
                        patched: bool = False) -> dict:
    """One event per message: the poster flushes after each post."""
    receiver = _spawn(python, "events-receiver", url, kind, str(n), patched=patched)
    _line(receiver)
    poster = _spawn(python, "single-poster", url, kind, str(n), patched=patched)
    posted = _line(poster)
    done = _line(receiver)
    for p in (poster, receiver):
        p.stdin.close()
        p.wait(timeout=10)
    dt = done["t_last"] - posted["t0"]
    return {"messages_per_s": round(n / dt), "received": done["received"],
            "lost": n - done["received"], "messages": done["messages"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2000,
                        help="ping-pong round trips per contender per repetition")
    parser.add_argument("--reps", type=int, default=5,
                        help="interleaved ping-pong repetitions (ratios: their median)")
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--bliss", metavar="PYTHON", help="interpreter with BLISS 2.4")
    parser.add_argument("--profile", metavar="DIR",
                        help="write cProfile stats of the ping-pong processes to DIR")
    args = parser.parse_args()
    if args.profile:
        os.makedirs(args.profile, exist_ok=True)
        os.environ["BENCH_PROFILE_DIR"] = os.path.abspath(args.profile)
    sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
    from beacon_ipy.connection.private import PrivateRedis

    with PrivateRedis() as server:
        pingpong = bench_pingpong(server.url, args.rounds, args.reps, args.bliss)
        out = {"raw": {"pingpong": pingpong["raw"], "pingpong_echo": pingpong["raw_echo"]}}
        for key, patched in (("beacon", False), ("beacon_patched", True)):
            out[key] = {"pingpong": pingpong[key],
                        **bench_impl(sys.executable, "beacon", server.url, args.events,
                                     patched=patched)}
        if args.bliss:
            out["bliss"] = {"pingpong": pingpong["bliss"],
                            **bench_impl(args.bliss, "bliss", server.url, args.events)}
    ratios = {"beacon_rtt_vs_raw": rep_ratios(pingpong, "beacon"),
              "beacon_patched_rtt_vs_raw": rep_ratios(pingpong, "beacon_patched"),
              "beacon_rtt_vs_raw_echo": rep_ratios(pingpong, "beacon", "raw_echo")}
    if "bliss" in out:
        ratios["bliss_rtt_vs_raw"] = rep_ratios(pingpong, "bliss")
        for key in ("fresh", "default"):
            ratios[f"beacon_{key}_vs_bliss"] = round(
                out["beacon"][key]["p50_us"] / out["bliss"][key]["p50_us"], 2)
        ratios["beacon_events_vs_bliss"] = round(
            out["beacon"]["events_batched"]["events_per_s"]
            / out["bliss"]["events_batched"]["events_per_s"], 2)
    out["ratios"] = ratios
    print_table(out, args)
    print(json.dumps(out))


def print_table(out: dict, args) -> None:
    b, bp, raw = out["beacon"], out["beacon_patched"], out["raw"]
    bliss = out.get("bliss", {})
    print(f"ping-pong: {args.reps} interleaved repetitions of {args.rounds} rounds each; "
          f"latencies: median of the per-repetition p50")
    print(f"{'measure':34} {'beacon-ipy':>12} {'beacon patched':>15} {'raw':>8} "
          f"{'BLISS':>8}")
    for label, m in (("p50", "p50_us"), ("p99", "p99_us"), ("CPU/round", "cpu_us")):
        print(f"{'ping-pong RTT ' + label + ' (us)':34} {b['pingpong'][m]:>12} "
              f"{bp['pingpong'][m]:>15} {raw['pingpong'][m]:>8} "
              f"{bliss.get('pingpong', {}).get(m, '-'):>8}")
    print(f"{'raw RTT p50, holders hear own msgs':34} {'':>12} {'':>15} "
          f"{raw['pingpong_echo']['p50_us']:>8}")
    for key in ("beacon", "beacon_patched", "bliss"):
        if key in out:
            r = out["ratios"][f"{key}_rtt_vs_raw"]
            print(f"{key + ' RTT / raw, per repetition':34} median {r['median']} "
                  f"(min {r['min']}, max {r['max']}): {r['per_rep']}")
    for key in ("fresh", "default"):
        print(f"{key + ' channel p50 (us)':34} {b[key]['p50_us']:>12} "
              f"{bp[key]['p50_us']:>15} {'':>8} {bliss.get(key, {}).get('p50_us', '-'):>8}")
    for key, m, label in (("events_batched", "events_per_s", "events/s batched"),
                          ("events_single", "messages_per_s", "messages/s one event each")):
        print(f"{label:34} {b[key][m]:>12} {bp[key][m]:>15} {'':>8} "
              f"{bliss.get(key, {}).get(m, '-'):>8}")
    summary = {k: v["median"] if isinstance(v, dict) else v for k, v in out["ratios"].items()}
    print(f"ratios: {summary}")


if __name__ == "__main__":
    main()
