"""``%load_ext beacon_ipy`` and its magics, in real kernels (jupyter_client, nbclient).

Other processes are real peers (tests/peers/channel_peer.py) on the session's Redis. "While
the kernel is idle" is proven the way tests/test_kernel.py does it: the kernel's own
callback pushes to a Redis list, and the test waits on that list without sending the
kernel anything.
"""

from __future__ import annotations

import itertools
import os

import h5py
import nbformat
import pytest
import redis as redis_py
from jupyter_helpers import STOCK_KERNEL_NAME, started_kernel, wait_for_list
from jupyter_widget_helpers import (
    CommWatcher,
    comm_models,
    paged_text,
    widget_views,
)
from nbclient import NotebookClient
from peer import Peer
from waiting import wait_for

from beacon_ipy.connection import get_redis

pytestmark = pytest.mark.timeout(90)

_names = itertools.count()

MODE = "__import__('beacon_ipy.jupyter.eventloop').jupyter.eventloop.kernel_mode()"
# Greenlets spawned in the kernel (gevent.Greenlet: spawn, spawn_later) not finished yet.
# (gevent's threadpool workers, used by the saver for HDF5 calls, are gevent's own.)
LIVE_GREENLETS = ("[g for g in __import__('gc').get_objects() "
                  "if isinstance(g, __import__('gevent').Greenlet) and not g.dead]")


def unique(prefix: str) -> str:
    return f"test:magics:{prefix}:{os.getpid()}:{next(_names)}"


def magic(name: str, line: str) -> str:
    """An expression running line magic ``%name line`` (magics are not expressions)."""
    return f"get_ipython().run_line_magic({name!r}, {line!r})"


def usage_error(kernel, code: str) -> str:
    """Run ``code``; it must fail with a UsageError (no traceback): return the message."""
    res = kernel.execute(code)
    assert res.status == "error", f"{code!r} did not fail: {res}"
    assert res.ename == "UsageError", f"{code!r}: {res.ename}: {res.evalue}"
    return res.evalue


@pytest.fixture(scope="module")
def kernel(kernels_dir, redis_url):
    """One beacon kernel with the extension loaded, shared by tests that keep it usable."""
    with started_kernel(kernels_dir) as k:
        res = k.run("%load_ext beacon_ipy")
        assert res.stdout == "", "the beacon kernel needs no note"
        yield k


@pytest.fixture
def peer(redis_url):
    with Peer("channel_peer.py") as p:
        p.expect("ready")
        yield p


# -- loading ---------------------------------------------------------------------------


def test_load_is_idempotent_and_magics_document_themselves(kernel):
    assert "already loaded" in kernel.run("%load_ext beacon_ipy").stdout
    kernel.run("%reload_ext beacon_ipy")
    assert kernel.eval(MODE) == "beacon"
    for magic, words in {"channel": ["--watch", "--default", "--timeout", "NAME = EXPR"],
                         "eventpost": ["NAME [EXPR, ...]", "--listen", "--max"],
                         "savescans": ["SESSION", "--dir", "--status", "--stop", "--compression"]}.items():
        res = kernel.execute(f"%{magic}?")
        assert res.status == "ok"
        text = paged_text(res.reply)
        assert f"%{magic} [" in text, text  # the usage line
        for word in words:
            assert word in text, (magic, word, text)


# -- %channel --------------------------------------------------------------------------


def test_channel_show_set_and_list(kernel, peer):
    name = unique("motor")
    kernel.run("speed = 2.5")
    # Set from an expression in the user namespace: another process sees it.
    assert kernel.run(f"%channel {name} = speed * 2").result is None
    assert peer.request(cmd="get", name=name)["value"] == 5.0
    # Another process sets it: the magic shows it, and assigns it.
    peer.request(cmd="set", name=name, value=[1, "two"])
    assert kernel.wait_until(f"{magic('channel', name)} == [1, 'two']")
    assert kernel.run(f"v = %channel {name}\nv").result == "[1, 'two']"
    # NAME=EXPR without spaces, strings with '=' and spaces in them.
    kernel.run(f"%channel {name}='a = b'")
    assert peer.request(cmd="get", name=name)["value"] == "a = b"
    # --default: the value when no process holds the channel.
    fresh = unique("fresh")
    assert kernel.eval(f"%channel --default 41+1 {fresh}") == 42
    assert kernel.eval(f"{magic('channel', unique('none') + ' --timeout 5')} is None")
    # Nobody holds it: the magic says so instead of showing nothing (issue 12, §3).
    nosuch = unique("nosuch")
    res = kernel.run(f"%channel {nosuch}")
    assert res.result is None and f"No process holds a value for {nosuch!r}" in res.stdout
    assert f"%channel {nosuch} = EXPR" in res.stdout
    assert "No process holds" not in kernel.run(f"%channel {name}").stdout
    # The table of this kernel's channels.
    table = kernel.run("%channel").result
    lines = {line.split()[0]: line for line in table.splitlines()[2:]}
    assert "'a = b'" in lines[name] and str(kernel.pid()) in lines[name]
    assert "(default)" in lines[fresh] and "42" in lines[fresh]
    assert table.splitlines()[0].split() == ["name", "kind", "value", "writer", "age"]
    # Rendered as an HTML table in Jupyter.
    html = next(m for m in kernel.run("%channel").messages if m["msg_type"] == "execute_result")
    assert "<table>" in html["content"]["data"]["text/html"]


def test_channel_errors_say_what_to_do(kernel):
    name = unique("errors")
    assert f"%channel {name} = EXPR" in usage_error(kernel, f"%channel {name} 3")
    assert "NameError" in usage_error(kernel, f"%channel {name} = nowhere_defined")
    assert "SyntaxError" in usage_error(kernel, f"%channel {name} = 1 +")
    message = usage_error(kernel, f"%channel {name} = lambda: 1")
    assert "cannot be sent" in message and "plain data" in message
    assert "give the value" in usage_error(kernel, f"%channel {name} =")
    assert "channel name" in usage_error(kernel, "%channel --watch")
    assert "channel name" in usage_error(kernel, "%channel = 3")
    assert "positive" in usage_error(kernel, f"%channel {name} --timeout 0")
    assert "--timeout" in usage_error(kernel, f"%channel {name} --timeout abc")
    kernel.run(f"from beacon_ipy.channels import EventChannel\nEventChannel({name + 'ev'!r})")
    assert "%eventpost" in usage_error(kernel, f"%channel {name}ev")
    # Nothing was set by the failed attempts.
    assert kernel.eval(f"{magic('channel', name)} is None")


def test_channel_completion(kernel, peer):
    base = unique("complete")
    kernel.run(f"%channel {base}:alpha = 1")
    peer.request(cmd="channel", name=f"{base}:beta", value=2)  # only the peer holds it
    wait_for(lambda: get_redis().pubsub_numsub(f"{base}:beta")[0][1] == 1,
             what="the peer's subscription")
    code = f"%channel {base}:"
    reply = kernel.client.complete(code, len(code), reply=True, timeout=10)["content"]
    start, end = reply["cursor_start"], reply["cursor_end"]
    completed = sorted(code[:start] + m + code[end:] for m in reply["matches"])
    assert completed == [f"%channel {base}:alpha", f"%channel {base}:beta"]
    code = "%channel --wa"
    reply = kernel.client.complete(code, len(code), reply=True, timeout=10)["content"]
    assert reply["matches"] == ["--watch"]
    # After the name comes Python: ordinary completion.
    code = f"%channel {base}:alpha = spe"
    kernel.run("speedy = 1")
    reply = kernel.client.complete(code, len(code), reply=True, timeout=10)["content"]
    assert "speedy" in reply["matches"]


def test_watch_displays_a_live_widget(kernel, peer):
    name = unique("watch")
    res = kernel.run(f"%channel --default 1.5 --watch {name}")
    assert widget_views(res), "a widget view was displayed"
    box_models = comm_models(res)
    field_id = next(c for c, m in box_models.items() if m == "FloatTextModel")
    watcher = CommWatcher(kernel)
    peer.request(cmd="set", name=name, value=8.25)
    watcher.wait(field_id, lambda u: u.state.get("value") == 8.25)


def test_greenlets_progress_while_idle(kernel, peer):
    """Another process sets a channel N times while the kernel is idle; every callback ran."""
    name, ack, count = unique("idle"), unique("ack"), 300
    get_redis().delete(ack)
    kernel.run(f"""
from beacon_ipy.connection import get_redis
%channel --default -1 {name}
seen = []
def on_value(value):
    seen.append(value)
    if len(seen) == {count}:
        get_redis().rpush({ack!r}, len(seen))
Channel = __import__('beacon_ipy.channels').channels.Channel
Channel({name!r}).register_callback(on_value)
""")
    peer.request(cmd="set_many", name=name, values=list(range(count)), timeout=30)
    # The kernel is sent nothing until its own callback acknowledged all N values.
    assert int(wait_for_list(ack)) == count
    assert kernel.eval("seen") == list(range(count))


def test_interrupt_during_a_value_wait(kernel, redis_url):
    name = unique("silent")
    # A subscriber that never answers queries: a reader waits for its answer.
    silent = redis_py.Redis.from_url(redis_url).pubsub()
    silent.subscribe(name)
    silent.get_message(timeout=5)
    try:
        msg_id = kernel.submit(f"print('waiting', flush=True)\n%channel {name} --timeout 60")
        kernel.wait_for_stream(msg_id, "waiting")
        # Interrupt only once the kernel is in the .value wait: its channel is subscribed
        # next to the silent subscriber (earlier, the interrupt hits the cell elsewhere).
        redis = get_redis()
        wait_for(lambda: redis.pubsub_numsub(name)[0][1] == 2, timeout=10,
                 what=f"the kernel to subscribe to {name}")
        kernel.interrupt()
        res = kernel.collect(msg_id, timeout=10)
        assert res.ename == "KeyboardInterrupt"
        assert redis.pubsub_numsub(name)[0][1] == 2, "the interrupt must not unsubscribe"
        # A short wait fails with a usage error saying what to do.
        message = usage_error(kernel, f"%channel {name} --timeout 0.3")
        assert "--timeout" in message and "--default" in message
    finally:
        silent.close()
    # With the silent subscriber gone, the channel gets its value; the kernel is fine.
    assert kernel.eval(f"%channel --default 'ok' {name}") == "ok"


# -- %eventpost ------------------------------------------------------------------------


def test_eventpost_posts_and_listens(kernel, peer):
    name = unique("events")
    peer.request(cmd="event_channel", name=name)
    peer.request(cmd="event_callback", name=name)
    kernel.run("items = ['c', 'd']")
    kernel.run(f"%eventpost {name} 'a', {{'b': 1}}, *items")
    assert peer.expect("events")["values"] == ["a", {"b": 1}, "c", "d"]
    res = kernel.run(f"%eventpost --listen --max 3 {name}")
    html_ids = [c for c, m in comm_models(res).items() if m == "HTMLModel"]
    watcher = CommWatcher(kernel)
    peer.request(cmd="post", name=name, values=["e1", "e2", "e3", "e4"])

    def shows_last_three(update):
        text = update.state.get("value", "")
        return "e4" in text and "e2" in text and "e1" not in text

    watcher.wait_any(html_ids, shows_last_three)
    assert "1 2" in usage_error(kernel, f"%eventpost {name} 1 2")
    assert "give the events" in usage_error(kernel, f"%eventpost {name}")
    assert "takes no events" in usage_error(kernel, f"%eventpost --listen {name} 1")
    assert "at least 1" in usage_error(kernel, f"%eventpost --listen --max 0 {name}")
    assert "NameError" in usage_error(kernel, f"%eventpost {name} missing_name")
    assert "cannot post" in usage_error(kernel, f"%eventpost {name} object()")
    kernel.run(f"%channel {name}x = 1")
    assert "%channel" in usage_error(kernel, f"%eventpost {name}x 1")


# -- %savescans ------------------------------------------------------------------------


def test_savescans_saves_a_scan_in_the_background(kernel, tmp_path):
    session = f"t{os.getpid()}x{next(_names)}"
    assert "--dir" in usage_error(kernel, f"%savescans {session}")
    assert "no saver" in usage_error(kernel, "%savescans --status")
    assert "no saver" in usage_error(kernel, "%savescans --stop")
    assert "give a session" in usage_error(kernel, "%savescans")
    res = kernel.run(f"%savescans {session} --dir {tmp_path} --compression gzip")
    assert "HTMLModel" in comm_models(res).values(), "a live status panel"
    assert "already saving" in usage_error(kernel, f"%savescans {session} --dir {tmp_path}")
    with Peer("scan_producer.py", session, "5", "20") as producer:
        scan_nb = producer.expect("pushed")["scan_nb"]
        producer.send(cmd="end")
        producer.expect("reply")
    status = kernel.wait_until(
        "s = %savescans --status\n'saved' in repr(s) and repr(s)", timeout=30)
    assert f"Saving session {session!r}" in status
    line = next(li for li in status.splitlines() if li.startswith(f"{scan_nb} "))
    path = line.split()[-1]
    with h5py.File(path, "r") as f:
        found = []
        f[f"{scan_nb}.1"].visititems(
            lambda key, obj: found.append(key) if isinstance(obj, h5py.Dataset)
            and obj.shape == (20,) and list(obj[()]) == [float(i) for i in range(20)]
            and obj.compression == "gzip"
            else None)
        assert found, "the counter's 20 points are in the saved entry, gzip-compressed"
    assert "Stopped saving" in kernel.run("%savescans --stop").stdout
    assert "no saver" in usage_error(kernel, "%savescans --status")


def test_liveplot_magic_plots_a_session_and_stops(kernel):
    session = f"t{os.getpid()}lp{next(_names)}"
    assert "give a session" in usage_error(kernel, "%liveplot")
    assert "no live plot" in usage_error(kernel, "%liveplot --stop")
    kernel.run(f"lp = get_ipython().run_line_magic('liveplot', '{session} --backend image')")
    with Peer("scan_producer.py", session, "5", "20") as producer:
        scan_nb = producer.expect("pushed")["scan_nb"]
        producer.send(cmd="end")
        producer.expect("reply")
    kernel.wait_until(f"lp.shown['scan_nb'] == {scan_nb} and lp.shown['ended']", timeout=30)
    # the drawn curve holds the producer's 20 points
    assert kernel.eval("len(lp.panel('curves').lines[-1].get_xdata())") == 20
    assert f"Stopped the live plot of {session}" in kernel.run("%liveplot --stop").stdout


# -- unloading -------------------------------------------------------------------------


def test_unload_stops_everything_the_extension_started(kernels_dir, peer, tmp_path):
    with started_kernel(kernels_dir) as k:
        baseline = len(k.eval(f"[repr(g) for g in {LIVE_GREENLETS}]"))
        name, events = unique("unload"), unique("unload-events")
        k.run("%load_ext beacon_ipy")
        k.run(f"%channel {name} = 1")
        k.run(f"%channel --watch {name}")
        k.run(f"%eventpost --listen {events}")
        k.run(f"from beacon_ipy.widgets import bind\nb = bind({name!r}, bounds=(0, 10))")
        k.run(f"from beacon_ipy.channels import Channel\nChannel({name!r})")
        k.run(f"%savescans t{os.getpid()}u --dir {tmp_path}")
        peer.request(cmd="set", name=name, value=2)
        assert k.wait_until(f"{magic('channel', name)} == 2")
        assert len(k.eval(f"[repr(g) for g in {LIVE_GREENLETS}]")) > baseline
        k.run("%unload_ext beacon_ipy")
        # Every greenlet it started is gone (kills complete once the hub runs).
        k.wait_until(f"len({LIVE_GREENLETS}) == {baseline}", timeout=10)
        assert k.eval("len(__import__('beacon_ipy.channels').channels.Bus._instances)") == 0
        assert k.eval("b.closed") is True
        assert "not found" in k.execute("%channel").evalue
        # Channels now show as text again; loading again works.
        assert k.run(f"Channel({name!r})").result.startswith(f"Channel({name!r})")
        assert not widget_views(k.run(f"Channel({name!r})"))
        k.run("%load_ext beacon_ipy")
        assert k.eval(f"%channel --default 5 {unique('again')}") == 5


# -- a stock python3 kernel ------------------------------------------------------------


def test_stock_kernel_gets_a_note_once_and_idle_greenlets(kernels_dir, peer):
    with started_kernel(kernels_dir, STOCK_KERNEL_NAME) as k:
        assert k.eval(MODE) == "stock"
        note = k.run("%load_ext beacon_ipy").stdout
        assert "beacon-ipy install-kernel" in note and "time.sleep" in note
        assert k.eval(MODE) == "stock+gevent"
        assert k.run("%reload_ext beacon_ipy").stdout == "", "the note is printed once"
        name, ack, count = unique("stock"), unique("stock-ack"), 100
        get_redis().delete(ack)
        k.run(f"""
from beacon_ipy.connection import get_redis
from beacon_ipy.channels import Channel
%channel --default -1 {name}
seen = []
def on_value(value):
    seen.append(value)
    if len(seen) == {count}:
        get_redis().rpush({ack!r}, len(seen))
Channel({name!r}).register_callback(on_value)
""")
        peer.request(cmd="set_many", name=name, values=list(range(count)), timeout=30)
        assert int(wait_for_list(ack)) == count
        assert k.eval("seen") == list(range(count))
        k.run("%unload_ext beacon_ipy")
        assert k.eval(MODE) == "stock", "unloading switches the integration off"


# -- nbclient --------------------------------------------------------------------------


def test_notebook_runs_headless_with_nbclient(kernels_dir, peer, monkeypatch):
    name = unique("notebook")
    peer.request(cmd="channel", name=name, value={"gain": 3})
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in (
        "%load_ext beacon_ipy",
        f"%channel {name}",
        f"%channel {name} = {{'gain': 4}}",
        f"%channel --watch {name}",
        "%channel",
    )]
    monkeypatch.setenv("JUPYTER_PATH", str(kernels_dir.parent))
    NotebookClient(nb, kernel_name="beacon", timeout=30).execute()
    outputs = [cell.outputs for cell in nb.cells]
    assert outputs[1][0]["data"]["text/plain"] == "{'gain': 3}"
    assert peer.request(cmd="get", name=name)["value"] == {"gain": 4}
    assert "application/vnd.jupyter.widget-view+json" in outputs[3][0]["data"]
    assert outputs[3][0]["data"]["text/plain"] == f"Channel({name!r}) -> {{'gain': 4}}"
    assert name in outputs[4][0]["data"]["text/plain"]
    assert not any(o.get("output_type") == "error" for out in outputs for o in out)
