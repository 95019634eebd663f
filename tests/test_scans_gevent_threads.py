"""The beacon kernel's gevent mode (``patch_all(thread=False)``: real OS locks, greenlets
on one hub): greenlets that open the scan layer at the same moment must not deadlock.

A threading lock held across I/O there blocks the whole thread as soon as a second
greenlet waits for it (the live_scans notebook hung this way: the live plot's session
runner and its replay runner both opening their blissdata store).
"""

from __future__ import annotations

import subprocess
import sys

CODE = r"""
import gevent.monkey
gevent.monkey.patch_all(thread=False)
import sys
import gevent
from beacon_ipy.scans import bdgaps

url = sys.argv[1]
stores = gevent.joinall([gevent.spawn(bdgaps.data_store, url) for _ in range(4)],
                        timeout=20, raise_error=True)
assert len(stores) == 4, f"only {len(stores)} of 4 greenlets got a store within 20 s"
assert len({id(g.value) for g in stores}) == 1, "one store per URL per process"
print("ok")
"""


def test_greenlets_opening_the_scan_layer_together_do_not_deadlock(own_data_redis):
    # own server: this process has never opened a store for it, so all four race
    out = subprocess.run([sys.executable, "-c", CODE, own_data_redis.url], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
