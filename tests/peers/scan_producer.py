"""Peer: publishes a scan and keeps it running (liveness key alive) until killed or told.

Usage: scan_producer.py SESSION HEARTBEAT NPOINTS
Prints {"event": "pushed", "scan_nb": n} once NPOINTS points are published, then waits
for {"cmd": "end"} (ends SUCCESS) or {"cmd": "exit"} on stdin, keeping the gevent hub
(and so the heartbeat) running.
"""

import json
import sys

import gevent
import numpy as np
from gevent.fileobject import FileObjectThread

from beacon_ipy.scans import StreamDescription, create_scan


def main():
    session, heartbeat, npoints = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    scan = create_scan(session, {"type": "timescan", "title": "peer scan", "npoints": 0},
                       [StreamDescription.scalar("counter"),
                        StreamDescription.spectrum("spectrum", 16, "float32")],
                       heartbeat=heartbeat)
    scan.start()
    for i in range(npoints):
        scan.push({"counter": float(i), "spectrum": np.full(16, i, dtype=np.float32)})
    print(json.dumps({"event": "pushed", "scan_nb": scan.scan_nb}), flush=True)
    stdin = FileObjectThread(sys.stdin)
    for line in stdin:
        cmd = json.loads(line).get("cmd")
        if cmd == "end":
            scan.end("SUCCESS")
            print(json.dumps({"event": "reply", "ended": True}), flush=True)
        elif cmd == "exit":
            break
    gevent.sleep(0)


if __name__ == "__main__":
    main()
