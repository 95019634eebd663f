"""Peer: a plain blissdata 2.x consumer (no beacon-ipy import) reading scans live.

Usage: blissdata_consumer.py URL SESSION NSCANS
Prints {"ready": true} once listening, then for each of the next NSCANS scans of SESSION,
read live with a CursorGroup to the end, one JSON line: {"number", "info_title",
"streams": {name: numeric values as lists | {"frames": n, "sums": [...]}}}.
"""

import json
import sys

import numpy as np
from blissdata import DataStore, ScanState
from blissdata.exceptions import EndOfStream
from blissdata.streams import CursorGroup

url, session, nscans = sys.argv[1], sys.argv[2], int(sys.argv[3])
store = DataStore(url)
since = store.get_last_scan_timetag()
print(json.dumps({"ready": True}), flush=True)
done = 0
while done < nscans:
    since, key = store.get_next_scan(since=since)
    scan = store.load_scan(key)
    if scan.session != session:
        continue
    while scan.state < ScanState.PREPARED or not scan.streams:
        scan.update()
    group = CursorGroup(scan.streams)
    values = {name: [] for name in scan.streams}
    while True:
        try:
            views = group.read(timeout=1)
        except EndOfStream:
            break
        for stream, view in views.items():
            if stream.plugin != "lima":
                values[stream.name].extend(np.asarray(view.get_data()).tolist())
    while scan.state < ScanState.CLOSED:
        scan.update()
    out = {}
    for name, stream in scan.streams.items():
        if stream.plugin == "lima":
            frames = [stream[i] for i in range(len(stream))]  # from the files, no Tango
            out[name] = {"frames": len(frames), "sums": [int(f.sum()) for f in frames]}
        else:
            out[name] = values[name]
    print(json.dumps({"number": scan.number, "title": scan.info["title"],
                      "end_reason": scan.info["end_reason"], "streams": out}), flush=True)
    done += 1
