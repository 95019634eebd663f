"""The ``beacon`` kernel: greenlets live while the kernel idles and while cells wait.

Every test drives a real kernel process through jupyter_client, with kernelspecs written
into a temporary folder. "While idle" is proven either by re-executing short cells that
read a counter (the greenlet ticks in the gaps), or, stronger, by the greenlet answering
through Redis while the test sends the kernel nothing at all.
"""

from __future__ import annotations

import itertools
import json
import os
import time

import pytest
from jupyter_helpers import STOCK_KERNEL_NAME, started_kernel, wait_for_list

from beacon_ipy import cli
from beacon_ipy.connection import get_redis
from beacon_ipy.jupyter import eventloop
from beacon_ipy.jupyter.kernelspec import DISPLAY_NAME, KERNEL_NAME

pytestmark = pytest.mark.timeout(120)

# A greenlet incrementing ``n`` every 5 ms. When ``n`` reaches ``target`` it sets
# ``reached`` and, if ``alarm`` names a Redis list, pushes ``n`` there: the test can then
# wait on Redis while sending the kernel nothing, which proves the greenlet ran while idle.
TICKER = """
import gevent, gevent.event
n = 0
target = None
alarm = None
reached = gevent.event.Event()
def tick():
    global n, target
    while True:
        n += 1
        if target is not None and n >= target:
            target = None
            reached.set()
            if alarm is not None:
                from beacon_ipy.connection import get_redis
                get_redis().rpush(alarm, n)
        gevent.sleep(0.005)
ticker = gevent.spawn(tick)
"""

# A greenlet that keeps the main thread busy in Python code: a SIGINT arriving while a
# cell waits in gevent then almost always finds this greenlet running, not the cell.
BUSY = """
import gevent
busy_rounds = 0
def busy():
    global busy_rounds
    while True:
        for _ in range(2000):
            pass
        busy_rounds += 1
        gevent.sleep(0)
busy_greenlet = gevent.spawn(busy)
"""


def interrupt_gevent_waits(kernel, times: int) -> None:
    """Interrupt ``times`` cells blocked in ``Event().wait()`` while BUSY runs; each must
    end in KeyboardInterrupt and leave both background greenlets alive and working."""
    kernel.run(BUSY)
    for _ in range(times):
        msg_id = kernel.submit("print('waiting', flush=True); gevent.event.Event().wait()")
        kernel.wait_for_stream(msg_id, "waiting")
        kernel.interrupt()
        res = kernel.collect(msg_id, timeout=10)
        assert res.ename == "KeyboardInterrupt", res
    assert kernel.eval("(busy_greenlet.dead, repr(busy_greenlet.exception))") == (False, "None")
    assert kernel.eval("(ticker.dead, repr(ticker.exception))") == (False, "None")
    wait_for_list(arm(kernel, 20))
    rounds = kernel.eval("busy_rounds")
    kernel.wait_until(f"busy_rounds > {rounds}")
    kernel.run("busy_greenlet.kill()")


MODE = "__import__('beacon_ipy.jupyter.eventloop').jupyter.eventloop.kernel_mode()"


@pytest.fixture(scope="module")
def beacon(kernels_dir, redis_url):
    """One beacon kernel shared by the tests that leave it usable."""
    with started_kernel(kernels_dir) as kernel:
        kernel.run(TICKER)
        yield kernel


_alarms = itertools.count()


def arm(kernel, ticks: int) -> str:
    """Ask the kernel's ticker to push to a fresh Redis list after ``ticks`` more ticks."""
    key = f"test:kernel:alarm:{os.getpid()}:{next(_alarms)}"
    get_redis().delete(key)
    kernel.run(f"alarm = {key!r}; target = n + {ticks}")
    return key


# -- kernelspec ------------------------------------------------------------------------


def test_install_kernel_writes_a_launchable_spec(tmp_path, capsys):
    assert cli.main(["install-kernel", "--prefix", str(tmp_path)]) == 0
    spec_dir = tmp_path / "share" / "jupyter" / "kernels" / KERNEL_NAME
    spec = json.loads((spec_dir / "kernel.json").read_text())
    assert spec["display_name"] == DISPLAY_NAME
    assert spec["argv"][1:] == ["-m", "beacon_ipy.jupyter.kernel", "-f", "{connection_file}"]
    assert (spec_dir / "logo-64x64.png").exists()
    assert str(spec_dir) in capsys.readouterr().out
    # The installed spec starts a kernel that is really the beacon kernel.
    with started_kernel(spec_dir.parent) as kernel:
        assert kernel.eval(MODE) == "beacon"


def test_install_kernel_user_goes_to_the_user_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "data"))
    assert cli.main(["install-kernel", "--user"]) == 0
    assert (tmp_path / "data" / "kernels" / KERNEL_NAME / "kernel.json").exists()


def test_mode_outside_any_kernel():
    assert eventloop.kernel_mode() == "none"
    assert not eventloop.greenlets_run_while_idle()
    assert eventloop.enable_integration() == "none"  # harmless no-op
    # What the extension will tell a stock-kernel user: what is limited, how to switch.
    for mode in ("stock", "stock+gevent"):
        text = eventloop.limitations(mode)
        assert "beacon-ipy install-kernel" in text and DISPLAY_NAME in text


# -- the beacon kernel -----------------------------------------------------------------


def test_process_is_set_up_as_designed(beacon):
    # Patched sockets, native threads, the main loop waiting in the gevent hub.
    assert beacon.eval(MODE) == "beacon"
    assert beacon.eval("__import__('gevent.monkey').monkey.is_module_patched('socket')")
    assert not beacon.eval("__import__('gevent.monkey').monkey.is_module_patched('threading')")
    selectors = beacon.eval(
        "k = get_ipython().kernel\n"
        "[type(loop.asyncio_loop._selector).__name__ for loop in (k.io_loop,\n"
        " k.iopub_thread.io_loop, k.control_thread.io_loop, k.shell_channel_thread.io_loop)]"
    )
    # The main thread waits in the hub; the kernel's worker threads wait natively.
    assert selectors[0] == "GeventSelector"
    assert "GeventSelector" not in selectors[1:], selectors


def test_greenlet_progresses_while_kernel_is_idle(beacon):
    # Strong form: after arming, the test sends no request at all; only a greenlet
    # running in the idle kernel can push the alarm.
    key = arm(beacon, 50)
    assert int(wait_for_list(key)) >= 50
    # Polled form: each poll is a short cell; 5 ms ticks between polls spaced by
    # ~50 ms add up to ~10 per idle gap, whereas a kernel running its hub only during
    # cells would gain about one tick per poll and need ~100 polls.
    start = beacon.eval("n")
    polls = 0
    deadline = time.monotonic() + 20
    while beacon.eval("n") < start + 100:
        polls += 1
        assert time.monotonic() < deadline, "the ticker stopped progressing"
        time.sleep(0.05)  # spacing between polls, not synchronisation
    assert polls < 40, f"the ticker only progressed during cells ({polls} polls)"
    assert beacon.eval("ticker.dead") is False


@pytest.mark.parametrize("wait", [
    "time.sleep(0.01)",
    "gevent.sleep(0.01)",
    "gevent.event.Event().wait(0.01)",
])
def test_greenlets_run_while_a_cell_waits(beacon, wait):
    # The cell loops on the waiting call until the greenlet made 20 more ticks; if the
    # wait did not run the hub, ``n`` could not move and the cell would hit its deadline.
    res = beacon.run(f"""
import time, gevent, gevent.event
goal = n + 20
deadline = time.monotonic() + 10
while n < goal and time.monotonic() < deadline:
    {wait}
print(n >= goal)
""")
    assert res.stdout.strip() == "True"


def test_event_wait_is_woken_by_a_greenlet(beacon):
    res = beacon.run("""
reached.clear()
alarm = None
target = n + 20
print(reached.wait(timeout=10))
""")
    assert res.stdout.strip() == "True"


def test_redis_listener_greenlet_receives_while_idle(beacon, redis_url):
    """A pub/sub listener in the kernel gets N messages published while the kernel idles."""
    count = 200
    channel = "test:kernel:pubsub"
    ack_key = "test:kernel:ack"
    redis = get_redis()
    redis.delete(ack_key)
    beacon.run(f"""
import gevent
from beacon_ipy.connection import get_redis
received = []
pubsub = get_redis().pubsub(ignore_subscribe_messages=True)
pubsub.subscribe({channel!r})
def listen():
    for message in pubsub.listen():
        received.append(int(message["data"]))
        if len(received) == {count}:
            get_redis().rpush({ack_key!r}, len(received))
listener = gevent.spawn(listen)
""")
    deadline = time.monotonic() + 10
    while redis.pubsub_numsub(channel)[0][1] < 1:
        assert time.monotonic() < deadline, "the kernel's listener never subscribed"
        time.sleep(0.01)
    for i in range(count):
        redis.publish(channel, str(i))
    # No request is sent to the kernel until the greenlet acknowledged: it ran while idle.
    assert int(wait_for_list(ack_key)) == count
    assert beacon.eval("received") == list(range(count))
    beacon.run("listener.kill(); pubsub.close()")


def test_interrupt_during_event_wait(kernels_dir):
    with started_kernel(kernels_dir) as kernel:
        kernel.run(TICKER)
        msg_id = kernel.submit(
            "import gevent.event; print('waiting', flush=True); gevent.event.Event().wait()"
        )
        kernel.wait_for_stream(msg_id, "waiting")
        kernel.interrupt()
        res = kernel.collect(msg_id, timeout=10)
        assert res.status == "error"
        assert res.ename == "KeyboardInterrupt"
        # Still usable, and the background greenlet survived the interrupt.
        assert kernel.eval("1 + 1") == 2
        assert kernel.eval("ticker.dead") is False
        wait_for_list(arm(kernel, 20))
        # Interrupts go to the cell, never to a background greenlet running at that time.
        interrupt_gevent_waits(kernel, 5)
        # time.sleep (gevent's, in this kernel) is interruptible too.
        msg_id = kernel.submit("import time; print('waiting', flush=True); time.sleep(60)")
        kernel.wait_for_stream(msg_id, "waiting")
        kernel.interrupt()
        assert kernel.collect(msg_id, timeout=10).ename == "KeyboardInterrupt"
        assert kernel.eval("2 + 2") == 4


def test_restart_and_graceful_shutdown(kernels_dir):
    with started_kernel(kernels_dir) as kernel:
        kernel.run(TICKER)
        old_pid = kernel.pid()
        kernel.restart()
        assert kernel.pid() != old_pid
        assert kernel.eval("'n' in globals()") is False
        assert kernel.eval(MODE) == "beacon"
        kernel.run(TICKER)
        wait_for_list(arm(kernel, 20))
        # A polite shutdown (what Jupyter does) ends the process by itself, greenlets and
        # all, instead of waiting to be killed.
        process = kernel.manager.provisioner.process
        kernel.client.stop_channels()
        kernel.manager.shutdown_kernel(now=False)
        assert process.returncode == 0


def test_subshell_runs_while_main_shell_waits_in_gevent(kernels_dir):
    with started_kernel(kernels_dir) as kernel:
        info = kernel.client.kernel_info(reply=True, timeout=10)["content"]
        if "kernel subshells" not in info.get("supported_features", []):
            pytest.skip("this ipykernel has no subshells")
        subshell = kernel.create_subshell()
        kernel.run(TICKER + "\nrelease = gevent.event.Event()")
        main_id = kernel.submit("print('waiting', flush=True); release.wait(); print('released')")
        kernel.wait_for_stream(main_id, "waiting")
        # While the main shell is blocked, a subshell (another thread) still executes,
        # sees the main thread's greenlet progress, and can release the main shell.
        res = kernel.collect(kernel.submit(
            "import threading, time\n"
            "start = n\n"
            "deadline = time.monotonic() + 10\n"
            "while n < start + 20 and time.monotonic() < deadline:\n"
            "    time.sleep(0.01)\n"
            "print(threading.current_thread() is threading.main_thread(), n >= start + 20)",
            subshell_id=subshell), timeout=15).check()
        assert res.stdout.split() == ["False", "True"]
        kernel.collect(kernel.submit("release.set()", subshell_id=subshell)).check()
        main = kernel.collect(main_id, timeout=10).check()
        assert "released" in main.stdout


# -- a stock ipykernel with the integration --------------------------------------------


def test_stock_kernel_integration(kernels_dir):
    enable = "__import__('beacon_ipy.jupyter.eventloop').jupyter.eventloop.enable_integration()"
    disable = "__import__('beacon_ipy.jupyter.eventloop').jupyter.eventloop.disable_integration()"
    with started_kernel(kernels_dir, STOCK_KERNEL_NAME) as kernel:
        assert kernel.eval(MODE) == "stock"
        # Another event-loop integration already active: a clear refusal, nothing changed.
        kernel.run("k = get_ipython().kernel\ndef other_loop(kernel): pass\nk.eventloop = other_loop")
        res = kernel.execute(enable)
        assert res.ename == "RuntimeError" and "beacon" in res.evalue, res
        assert kernel.eval("k.eventloop is other_loop")
        kernel.run("k.eventloop = None")
        kernel.run(TICKER)
        # Negative control: nothing runs the hub in a stock kernel, the greenlet never starts.
        for _ in range(5):
            assert kernel.eval("n") == 0
        assert kernel.eval(enable) == "stock+gevent"
        assert kernel.eval(enable) == "stock+gevent"  # idempotent
        wait_for_list(arm(kernel, 50))
        # `%matplotlib widget` resets the kernel's event loop; the integration comes back.
        kernel.run("%matplotlib widget")
        assert kernel.eval(MODE) == "stock+gevent"
        wait_for_list(arm(kernel, 20))
        # An interrupt during a gevent wait in a cell interrupts the cell, not a greenlet.
        interrupt_gevent_waits(kernel, 5)
        kernel.run(disable)
        assert kernel.eval(MODE) == "stock"
        frozen = kernel.eval("n")
        for _ in range(5):
            assert kernel.eval("n") == frozen
