"""A blocked beacon kernel: cells queued by "Run All" must run; a stuck one tells where.

What the browser test saw (2 of ~10 runs, machine loaded): after "Run All", the first
cells ran, the rest stayed queued (``[*]``) for good, and JupyterLab showed the kernel
"Idle". Traced (``tests/peers/lab_kernel_trace.py``, and reproduced with the pre-32088ea
``bdgaps.data_store``): the kernel's main thread was blocked for good in
``bdgaps.data_store`` (a threading lock held across Redis I/O: in the beacon kernel's
``patch_all(thread=False)`` a greenlet switched away inside it and the next greenlet
asking for a store blocked the whole thread: the live plot's two runners opening their
store together). JupyterLab's "Idle" came from the control channel (the widget
manager's ``create_subshell_request`` gets its own busy/idle), not from the main shell.

Here the same sequence runs on a real beacon kernel through a real client: one cell
starts greenlets that open the scan layer; the next cells are already queued, as Run
All queues them; every one must run, and the greenlets must all get their store (fails
with the pre-32088ea ``data_store``). And since such a kernel is silent, ``SIGUSR1``
makes it print every thread's stack to its stderr, blocked main thread included.
"""

from __future__ import annotations

import os
import signal
import time

from jupyter_helpers import started_kernel

from beacon_ipy.jupyter.kernel import STACK_DUMP_SIGNAL

START = """\
import gevent
from beacon_ipy.scans import bdgaps

openers = [gevent.spawn(bdgaps.data_store, {url!r}) for _ in range(4)]
"""

#: Cells queued behind the first one; each yields to the hub (greenlets run meanwhile).
QUEUED = ["gevent.sleep(0.05); step = 1", "gevent.sleep(0.05); step += 1",
          "gevent.joinall(openers, timeout=15); step += 1"]

CHECK = """\
print(step, sum(1 for g in openers if g.successful()),
      len({id(g.value) for g in openers if g.successful()}))
"""


def test_cells_queued_behind_greenlets_opening_the_scan_layer_run(kernels_dir, own_data_redis):
    # a fresh server: the kernel has never opened a store for it, so the four race
    with started_kernel(kernels_dir) as kernel:
        cells = [START.format(url=own_data_redis.url), *QUEUED]
        sent = [kernel.submit(code) for code in cells]  # all queued at once, as Run All
        for msg_id, code in zip(sent, cells, strict=True):
            try:
                kernel.collect(msg_id, timeout=30).check()
            except TimeoutError as exc:
                raise AssertionError(
                    f"the cell {code!r} did not finish within 30 s: the kernel's main "
                    f"thread is blocked (greenlets opening the scan layer deadlocked)"
                ) from exc
        assert kernel.run(CHECK).stdout.split() == ["3", "4", "1"], (
            "every greenlet gets the one store of its URL")


#: A cell that blocks the kernel's main thread for good on a real lock (threads are not
#: patched in the beacon kernel), as a deadlocked greenlet does.
BLOCK = """\
import threading

def stuck_in_this_cell():
    lock = threading.Lock()
    lock.acquire()
    print("blocking now", flush=True)
    lock.acquire()

stuck_in_this_cell()
"""


def test_a_blocked_kernel_prints_its_stacks_on_sigusr1(kernels_dir, capfd):
    # the kernel's stderr is this process's (inherited): capfd reads it
    with started_kernel(kernels_dir) as kernel:
        pid = kernel.pid()
        msg_id = kernel.submit(BLOCK)
        kernel.wait_for_stream(msg_id, "blocking now", timeout=60)
        os.kill(pid, getattr(signal, STACK_DUMP_SIGNAL))
        seen = ""
        deadline = time.monotonic() + 30
        while "stuck_in_this_cell" not in seen:
            assert time.monotonic() < deadline, f"no stack dump on stderr: {seen[-2000:]!r}"
            seen += capfd.readouterr().err
            time.sleep(0.05)  # polling the captured stderr, with a deadline
        dump = seen[seen.index("Thread 0x") if "Thread 0x" in seen else 0:]
        assert "Current thread" in dump and 'line 7 in stuck_in_this_cell' in dump, dump
