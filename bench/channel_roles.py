"""The helper processes of ``bench/channels.py``: one role each, run as a script.

``python bench/channel_roles.py ROLE URL ARGS...``; each prints JSON lines on stdout and
most serve or wait on stdin (EOF: exit). Runs under beacon-ipy's interpreter or a BLISS
one (``kind`` ``beacon`` / ``bliss``), gevent-monkey-patched first when
``BENCH_MONKEY_PATCH=1`` (as BLISS processes are); with ``BENCH_PROFILE_DIR`` set, the
ping-pong roles write cProfile stats there.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time


def _stats(samples_s: list[float]) -> dict:
    us = sorted(s * 1e6 for s in samples_s)
    return {"p50_us": round(statistics.median(us), 1),
            "p99_us": round(us[min(len(us) - 1, int(len(us) * 0.99))], 1), "n": len(us)}


def _say(**msg) -> None:
    sys.stdout.write(json.dumps(msg) + "\n")
    sys.stdout.flush()


# ------------------------------------------------------------------- helper-process roles
def _raw_connection(url: str):
    """A bare redis-py connection (no pool, no PubSub object): the leanest raw client."""
    import redis

    kwargs = redis.connection.parse_url(url)
    cls = kwargs.pop("connection_class", redis.connection.Connection)
    # No read timeout: a pong waits for as long as the other contenders run.
    conn = cls(**kwargs, socket_timeout=None)
    conn.connect()
    return conn


def role_raw_pong(url: str, prefix: str, echo: str = "0") -> None:
    sub, pub = _raw_connection(url), _raw_connection(url)
    channels = [f"{prefix}:ping"] + ([f"{prefix}:pong"] if echo == "1" else [])
    sub.send_command("SUBSCRIBE", *channels)
    for _ in channels:
        sub.read_response(push_request=True)
    _say(event="ready")
    while True:
        msg = sub.read_response(push_request=True)
        if msg[0] == b"message":
            pub.send_command("PUBLISH", f"{prefix}:pong", msg[2])
            pub.read_response()


def role_raw_pingpong(url: str, prefix: str, echo: str = "0") -> None:
    """The floor's driving side: blocking redis-py connections, nothing else.

    ``echo``: both processes are also subscribed to the channel they publish on, as
    every holder of a Channel is (BLISS semantics), so each also receives its own
    message: the floor for the channel protocol itself.
    """
    sub, pub = _raw_connection(url), _raw_connection(url)
    channels = [f"{prefix}:pong"] + ([f"{prefix}:ping"] if echo == "1" else [])
    sub.send_command("SUBSCRIBE", *channels)
    for _ in channels:
        sub.read_response(push_request=True)
    ping = f"{prefix}:ping"

    def one_round(i: int) -> None:
        data = str(i).encode()
        pub.send_command("PUBLISH", ping, data)
        pub.read_response()
        while True:
            msg = sub.read_response(push_request=True)
            if msg[0] == b"message" and msg[2] == data:
                return

    _serve_rounds(one_round)


def _serve_rounds(one_round) -> None:
    """Say ready, then for each stdin line ``N``: time N rounds, print their stats."""
    _say(event="ready")
    i = 0
    for line in sys.stdin:
        samples = []
        cpu0 = time.process_time()
        for _ in range(int(line)):
            i += 1
            t0 = time.perf_counter()
            one_round(i)
            samples.append(time.perf_counter() - t0)
        cpu_us = round((time.process_time() - cpu0) / len(samples) * 1e6, 1)
        # CPU this process spent per round: far less noisy than the RTT on a shared VM.
        _say(event="rounds", results={**_stats(samples[10:]), "cpu_us": cpu_us})


def _channels_module(kind: str):
    if kind == "bliss":
        import redis
        from bliss.config import channels

        return channels, {"redis": redis.Redis.from_url(os.environ["BEACON_REDIS_URL"])}
    from beacon_ipy import channels

    return channels, {}


def role_pong(url: str, kind: str, prefix: str) -> None:
    channels, kw = _channels_module(kind)
    pong = channels.Channel(f"{prefix}:pong", default_value=-1, **kw)
    pong.value  # noqa: B018 - wait until known

    def on_ping(value):
        pong.value = value  # another channel: allowed inside a callback, BLISS too

    ping = channels.Channel(f"{prefix}:ping", default_value=-1, **kw)
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


def role_pingpong(url: str, kind: str, prefix: str) -> None:
    """Ping-pong's driving side (the pong process is already up), served per stdin line."""
    import gevent
    import gevent.event
    import gevent.fileobject

    channels, kw = _channels_module(kind)
    pong_seen = gevent.event.Event()
    expected = {"v": None}

    def on_pong(value):
        if value == expected["v"]:
            pong_seen.set()

    ping = channels.Channel(f"{prefix}:ping", **kw)
    ping.value  # noqa: B018
    pong = channels.Channel(f"{prefix}:pong", **kw)
    pong.value  # noqa: B018
    pong.register_callback(on_pong)

    def one_round(i: int) -> None:
        pong_seen.clear()
        expected["v"] = i
        ping.value = i
        if not pong_seen.wait(5):
            raise RuntimeError(f"{kind}: no pong for {i}")

    # stdin through gevent, so that the listener runs while we wait for a request
    sys.stdin = gevent.fileobject.FileObjectPosix(sys.stdin.fileno(), "r")
    _serve_rounds(one_round)


def role_driver(url: str, kind: str, events: str) -> None:
    """Run in a process of its own kind: fresh, default, events; print JSON."""
    import uuid

    import gevent

    channels, kw = _channels_module(kind)
    events_n = int(events)
    results: dict = {}

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
    "single-poster": role_single_poster, "raw-pingpong": role_raw_pingpong,
    "pingpong": role_pingpong,
}


def main() -> None:
    role, url, *rest = sys.argv[1:]
    if os.environ.get("BENCH_MONKEY_PATCH") == "1":
        from gevent import monkey

        monkey.patch_all(thread=False)  # as BLISS processes are
    profile_dir = os.environ.get("BENCH_PROFILE_DIR")
    if profile_dir and role in ("pong", "pingpong"):
        import cProfile

        patched = os.environ.get("BENCH_MONKEY_PATCH") == "1"
        out = os.path.join(profile_dir, f"{role}-{rest[0]}{'-patched' if patched else ''}.prof")
        cProfile.runctx("ROLES[role](url, *rest)", globals(), locals(), out)
    else:
        ROLES[role](url, *rest)


if __name__ == "__main__":
    main()
