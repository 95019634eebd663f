"""Channel benchmark: beacon-ipy vs raw redis-py pub/sub (and real BLISS with --bliss).

One run, one private redis-server, side by side:

- ping-pong RTT between two processes: raw redis-py PUBLISH/SUBSCRIBE (the floor), then
  beacon-ipy ``Channel`` (A sets ``ping``; B's callback sets ``pong``; A's callback wakes);
- a fresh ``Channel(name).value`` getting a value a peer holds;
- a fresh channel falling back to ``default_value`` with nobody holding it;
- ``EventChannel`` throughput: events posted in a loop (batched by the bus) and one event
  per message, counted and order-checked by the receiving process (zero loss required).

With ``--bliss PYTHON`` (an interpreter with BLISS 2.4 installed, e.g. the one the test
suite builds: ``python -c 'import sys; sys.path.insert(0, "tests"); import bliss_env;
print(bliss_env.bliss_python())'``) the same measurements run with two BLISS processes.

Prints a table, ratios, and a final JSON line. Usage::

    python bench/channels.py [--rounds 2000] [--events 2000000] [--bliss PYTHON]
                             [--profile DIR]

Every beacon-ipy measurement runs twice: in plain processes ("beacon") and in
gevent-monkey-patched ones ("beacon_patched", as BLISS processes are). ``--profile DIR``
writes cProfile stats of the ping-pong processes (``pong-*.prof``, ``driver-*.prof``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.abspath(__file__)


# ----------------------------------------------------------------------------- helpers
def _stats(samples_s: list[float]) -> dict:
    us = sorted(s * 1e6 for s in samples_s)
    return {"p50_us": round(statistics.median(us), 1),
            "p99_us": round(us[min(len(us) - 1, int(len(us) * 0.99))], 1), "n": len(us)}


def _say(**msg) -> None:
    sys.stdout.write(json.dumps(msg) + "\n")
    sys.stdout.flush()


def _spawn(python: str, role: str, url: str, *args: str,
           patched: bool = False) -> subprocess.Popen:
    """A helper process; ``patched``: it calls ``gevent.monkey.patch_all()`` first."""
    env = dict(os.environ, BEACON_REDIS_URL=url, PYTHONUNBUFFERED="1",
               BENCH_MONKEY_PATCH="1" if patched else "0")
    return subprocess.Popen([python, HERE, "--role", role, "--url", url, *args],
                            stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True, env=env)


def _line(proc: subprocess.Popen) -> dict:
    """Next JSON line from a helper process (cooperative if gevent is in use)."""
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"bench helper {proc.args} exited with {proc.wait()}")
    return json.loads(line)


# ------------------------------------------------------------------- helper-process roles
def _raw_connection(url: str):
    """A bare redis-py connection (no pool, no PubSub object): the leanest raw client."""
    import redis

    kwargs = redis.connection.parse_url(url)
    cls = kwargs.pop("connection_class", redis.connection.Connection)
    conn = cls(**kwargs)
    conn.connect()
    return conn


def role_raw_pong(url: str, echo: str = "0") -> None:
    sub, pub = _raw_connection(url), _raw_connection(url)
    channels = ["bench:raw:ping"] + (["bench:raw:pong"] if echo == "1" else [])
    sub.send_command("SUBSCRIBE", *channels)
    for _ in channels:
        sub.read_response(push_request=True)
    _say(event="ready")
    while True:
        msg = sub.read_response(push_request=True)
        if msg[0] == b"message":
            pub.send_command("PUBLISH", "bench:raw:pong", msg[2])
            pub.read_response()


def _channels_module(kind: str):
    if kind == "bliss":
        import redis
        from bliss.config import channels

        return channels, {"redis": redis.Redis.from_url(os.environ["BEACON_REDIS_URL"])}
    from beacon_ipy import channels

    return channels, {}


def role_pong(url: str, kind: str) -> None:
    channels, kw = _channels_module(kind)
    pong = channels.Channel("bench:pong", default_value=-1, **kw)
    pong.value  # noqa: B018 - wait until known

    def on_ping(value):
        pong.value = value  # another channel: allowed inside a callback, BLISS too

    ping = channels.Channel("bench:ping", default_value=-1, **kw)
    ping.value  # noqa: B018
    ping.register_callback(on_ping)
    _say(event="ready")
    _wait_stdin_eof()


def role_holder(url: str, kind: str, count: str) -> None:
    channels, kw = _channels_module(kind)
    held = [channels.Channel(f"bench:held:{kind}:{k}", value=k, **kw) for k in range(int(count))]
    _say(event="ready", n=len(held))
    _wait_stdin_eof()


def role_events_receiver(url: str, kind: str, total: str) -> None:
    import gevent.event

    channels, kw = _channels_module(kind)
    total_n = int(total)
    state = {"next": 0, "messages": 0, "bad": 0, "t_last": 0.0}
    done = gevent.event.Event()

    def on_events(events):
        state["messages"] += 1
        for e in events:
            if e != state["next"]:
                state["bad"] += 1
            state["next"] += 1
        state["t_last"] = time.time()
        if state["next"] >= total_n:
            done.set()

    ev = channels.EventChannel("bench:events", **kw)
    ev.register_callback(on_events)
    keep = [on_events]  # BLISS holds callbacks weakly
    _say(event="ready")
    done.wait()
    _say(event="done", received=state["next"], out_of_order=state["bad"],
         messages=state["messages"], t_last=state["t_last"], keep=len(keep))
    _wait_stdin_eof()


def _wait_stdin_eof() -> None:
    import gevent.fileobject

    gevent.fileobject.FileObjectPosix(sys.stdin.fileno(), "rb").read()


def role_driver(url: str, kind: str, rounds: str, events: str) -> None:
    """Run in a process of its own kind: ping-pong, fresh, default, events; print JSON."""
    import uuid

    import gevent
    import gevent.event

    channels, kw = _channels_module(kind)
    rounds_n, events_n = int(rounds), int(events)
    results: dict = {}

    # ping-pong (the pong process is already up)
    pong_seen = gevent.event.Event()
    expected = {"v": None}

    def on_pong(value):
        if value == expected["v"]:
            pong_seen.set()

    ping = channels.Channel("bench:ping", **kw)
    ping.value  # noqa: B018
    pong = channels.Channel("bench:pong", **kw)
    pong.value  # noqa: B018
    pong.register_callback(on_pong)
    samples = []
    cpu0 = time.process_time()
    for i in range(rounds_n):
        pong_seen.clear()
        expected["v"] = i
        t0 = time.perf_counter()
        ping.value = i
        if not pong_seen.wait(5):
            raise RuntimeError(f"{kind}: no pong for {i}")
        samples.append(time.perf_counter() - t0)
    results["pingpong"] = _stats(samples[10:])
    # CPU this process spent per round: far less noisy than the RTT on a shared machine.
    results["pingpong"]["cpu_us"] = round((time.process_time() - cpu0) / rounds_n * 1e6, 1)

    # fresh channel, value held by a peer
    holders = int(os.environ.get("BENCH_HELD", "300"))
    samples = []
    for k in range(holders):
        t0 = time.perf_counter()
        value = channels.Channel(f"bench:held:{kind}:{k}", **kw).value
        samples.append(time.perf_counter() - t0)
        assert value == k, (value, k)
    results["fresh"] = _stats(samples[5:])

    # default fallback, nobody holds
    tag = uuid.uuid4().hex[:6]
    samples = []
    for k in range(holders):
        t0 = time.perf_counter()
        value = channels.Channel(f"bench:absent:{tag}:{k}", default_value=k, **kw).value
        samples.append(time.perf_counter() - t0)
        assert value == k
    results["default"] = _stats(samples[5:])
    _say(event="pingdone", results=results)

    # events, batched by posting in a loop (the receiver checks order and count)
    ev = channels.EventChannel("bench:events", **kw)
    gevent.sleep(0.2)
    t0 = time.time()
    for i in range(events_n):
        ev.post(i)
        if i % 20000 == 19999:
            gevent.sleep(0)  # let the sender run, as any real poster would
    results["events_t0"] = t0
    _say(event="posted", t0=t0)
    _wait_stdin_eof()


# ------------------------------------------------------------------------------ main
def bench_raw(url: str, rounds: int, echo: bool = False) -> dict:
    """The floor: blocking redis-py connections in both processes, nothing else.

    ``echo``: both processes are also subscribed to the channel they publish on, as
    every holder of a Channel is (BLISS semantics), so each also receives its own
    message: the floor for the channel protocol itself.
    """
    pong = _spawn(sys.executable, "raw-pong", url, "1" if echo else "0")
    _line(pong)
    sub, pub = _raw_connection(url), _raw_connection(url)
    channels = ["bench:raw:pong"] + (["bench:raw:ping"] if echo else [])
    sub.send_command("SUBSCRIBE", *channels)
    for _ in channels:
        sub.read_response(push_request=True)
    samples = []
    cpu0 = time.process_time()
    for i in range(rounds):
        data = str(i).encode()
        t0 = time.perf_counter()
        pub.send_command("PUBLISH", "bench:raw:ping", data)
        pub.read_response()
        while True:
            msg = sub.read_response(push_request=True)
            if msg[0] == b"message" and msg[2] == data:
                break
        samples.append(time.perf_counter() - t0)
    cpu_us = round((time.process_time() - cpu0) / rounds * 1e6, 1)
    pong.kill()
    return {**_stats(samples[10:]), "cpu_us": cpu_us}


def bench_impl(python: str, kind: str, url: str, rounds: int, events: int,
               patched: bool = False) -> dict:
    holders = int(os.environ.get("BENCH_HELD", "300"))
    pong = _spawn(python, "pong", url, kind, patched=patched)
    holder = _spawn(python, "holder", url, kind, str(holders), patched=patched)
    receiver = _spawn(python, "events-receiver", url, kind, str(events), patched=patched)
    for p in (pong, holder, receiver):
        _line(p)
    driver = _spawn(python, "driver", url, kind, str(rounds), str(events), patched=patched)
    results = _line(driver)["results"]
    posted = _line(driver)
    done = _line(receiver)
    dt = done["t_last"] - posted["t0"]
    results["events_batched"] = {
        "events_per_s": round(events / dt), "received": done["received"],
        "lost": events - done["received"], "out_of_order": done["out_of_order"],
        "messages": done["messages"]}
    for p in (driver, pong, holder, receiver):
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


def role_single_poster(url: str, kind: str, count: str) -> None:
    import gevent

    channels, kw = _channels_module(kind)
    ev = channels.EventChannel("bench:events", **kw)
    gevent.sleep(0.2)
    t0 = time.time()
    for i in range(int(count)):
        ev.post(i)
        if kind == "beacon":
            ev.bus.flush()
        else:
            while ev._bus._pending_updates:
                gevent.sleep(0)
            gevent.sleep(0)
    _say(event="posted", t0=t0)
    _wait_stdin_eof()


ROLES = {
    "raw-pong": role_raw_pong, "pong": role_pong, "holder": role_holder,
    "events-receiver": role_events_receiver, "driver": role_driver,
    "single-poster": role_single_poster,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--bliss", metavar="PYTHON", help="interpreter with BLISS 2.4")
    parser.add_argument("--profile", metavar="DIR",
                        help="write cProfile stats of the ping-pong processes to DIR")
    parser.add_argument("--role", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.role:
        if os.environ.get("BENCH_MONKEY_PATCH") == "1":
            from gevent import monkey

            monkey.patch_all(thread=False)  # as BLISS processes are
        profile_dir = os.environ.get("BENCH_PROFILE_DIR")
        if profile_dir and args.role in ("pong", "driver"):
            import cProfile

            patched = os.environ.get("BENCH_MONKEY_PATCH") == "1"
            out = os.path.join(profile_dir, f"{args.role}-{rest[0]}"
                               f"{'-patched' if patched else ''}.prof")
            cProfile.runctx("ROLES[args.role](args.url, *rest)", globals(), locals(), out)
        else:
            ROLES[args.role](args.url, *rest)
        return

    if args.profile:
        os.makedirs(args.profile, exist_ok=True)
        os.environ["BENCH_PROFILE_DIR"] = os.path.abspath(args.profile)
    sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
    from beacon_ipy.connection.private import PrivateRedis

    with PrivateRedis() as server:
        out = {"raw": {"pingpong": bench_raw(server.url, args.rounds),
                       "pingpong_echo": bench_raw(server.url, args.rounds, echo=True)},
               "beacon": bench_impl(sys.executable, "beacon", server.url, args.rounds,
                                    args.events),
               "beacon_patched": bench_impl(sys.executable, "beacon", server.url,
                                            args.rounds, args.events, patched=True)}
        if args.bliss:
            out["bliss"] = bench_impl(args.bliss, "bliss", server.url, args.rounds,
                                      args.events)
    raw_rtt = out["raw"]["pingpong"]["p50_us"]
    ratios = {"beacon_rtt_vs_raw": round(out["beacon"]["pingpong"]["p50_us"] / raw_rtt, 2),
              "beacon_patched_rtt_vs_raw": round(
                  out["beacon_patched"]["pingpong"]["p50_us"] / raw_rtt, 2),
              "beacon_rtt_vs_raw_echo": round(out["beacon"]["pingpong"]["p50_us"]
                                              / out["raw"]["pingpong_echo"]["p50_us"], 2)}
    if "bliss" in out:
        ratios["bliss_rtt_vs_raw"] = round(out["bliss"]["pingpong"]["p50_us"] / raw_rtt, 2)
        for key, metric in (("fresh", "p50_us"), ("default", "p50_us")):
            ratios[f"beacon_{key}_vs_bliss"] = round(
                out["beacon"][key][metric] / out["bliss"][key][metric], 2)
        ratios["beacon_events_vs_bliss"] = round(
            out["beacon"]["events_batched"]["events_per_s"]
            / out["bliss"]["events_batched"]["events_per_s"], 2)
    out["ratios"] = ratios
    b, bp = out["beacon"], out["beacon_patched"]
    print(f"{'measure':34} {'beacon-ipy':>12} {'beacon patched':>15} {'raw / BLISS':>12}")
    print(f"{'ping-pong RTT p50 (us)':34} {b['pingpong']['p50_us']:>12} "
          f"{bp['pingpong']['p50_us']:>15} {raw_rtt:>12} (raw)")
    print(f"{'ping-pong RTT p99 (us)':34} {b['pingpong']['p99_us']:>12} "
          f"{bp['pingpong']['p99_us']:>15} {out['raw']['pingpong']['p99_us']:>12} (raw)")
    print(f"{'raw RTT p50, holders hear own msgs':34} {'':>12} {'':>15} "
          f"{out['raw']['pingpong_echo']['p50_us']:>12} (raw+echo)")
    for key in ("fresh", "default"):
        other = out.get("bliss", {}).get(key, {}).get("p50_us", "-")
        print(f"{key + ' channel p50 (us)':34} {b[key]['p50_us']:>12} "
              f"{bp[key]['p50_us']:>15} {other:>12}")
    other = out.get("bliss", {}).get("events_batched", {}).get("events_per_s", "-")
    print(f"{'events/s batched':34} {b['events_batched']['events_per_s']:>12} "
          f"{bp['events_batched']['events_per_s']:>15} {other:>12}")
    other = out.get("bliss", {}).get("events_single", {}).get("messages_per_s", "-")
    print(f"{'messages/s one event each':34} {b['events_single']['messages_per_s']:>12} "
          f"{bp['events_single']['messages_per_s']:>15} {other:>12}")
    print(f"ratios: {ratios}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
