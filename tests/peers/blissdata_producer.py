"""Peer: a plain blissdata 2.x producer (no beacon-ipy import), as BLISS publishes scans.

Usage: blissdata_producer.py URL SESSION NSCANS NPOINTS DATA_DIR [--hang]
Each scan: 0d float64 ``axis:mot``, 0d int32 ``diode:counts``, 1d float32 ``mca:spectrum``
(8 bins), and a lima stream ``cam:image`` whose frames are written to real HDF5 files
(3 per file). Point i: mot = 0.5 i, counts = 3 i, spectrum = full(8, i), image = full(i).
Prints one JSON line per closed scan ({"key", "number"}). ``--hang``: publish half the
points of one scan, print {"hanging": key} and sleep forever (a producer that froze).
"""

import json
import sys
import time

import h5py
import numpy as np
from blissdata import DataStore
from blissdata.streams.default import Stream
from blissdata.streams.lima.stream import LimaStream

url, session, nscans, npoints, data_dir = sys.argv[1:6]
hang = "--hang" in sys.argv
nscans, npoints = int(nscans), int(npoints)
store = DataStore(url)
FPF = 3

for n in range(1, nscans + 1):
    path = f"{data_dir}/{session}_{n:04d}"
    scan = store.create_scan({"name": "ascan", "number": n, "data_policy": "no_policy",
                              "session": session, "path": path},
                             info={"title": f"ascan mot 0 {npoints}", "type": "ascan",
                                   "npoints": npoints, "count_time": 0.01,
                                   "channels": {"axis:mot": {"unit": "mm",
                                                             "display_name": "mot"}}})
    mot = scan.create_stream(Stream.make_definition("axis:mot", "float64"))
    diode = scan.create_stream(Stream.make_definition("diode:counts", "int32"))
    mca = scan.create_stream(Stream.make_definition("mca:spectrum", "float32", (8,)))
    cam = scan.create_stream(LimaStream.make_definition(
        "cam:image", "uint16", [4, 5], server_url="id00/limaccds/cam",
        buffer_max_number=10, frames_per_acquisition=npoints, acquisition_offset=0,
        saving={"file_path": f"{path}/cam_%04d.h5", "data_path": "/entry_0000/data",
                "file_format": "hdf5", "file_offset": 0, "frames_per_file": FPF}))
    scan.prepare()
    scan.start()
    fh = None
    last = npoints // 2 if hang else npoints
    for i in range(last):
        if i % FPF == 0:
            if fh is not None:
                fh.close()
            import os
            os.makedirs(path, exist_ok=True)
            fh = h5py.File(f"{path}/cam_{i // FPF:04d}.h5", "w")
            dset = fh.create_dataset("/entry_0000/data", shape=(0, 4, 5),
                                     maxshape=(None, 4, 5), dtype="uint16")
        dset.resize(len(dset) + 1, axis=0)
        dset[-1] = np.full((4, 5), i, dtype="uint16")
        fh.flush()
        mot.send(0.5 * i)
        diode.send(np.int32(3 * i))
        mca.send(np.full(8, i, dtype="float32"))
        cam.send({"last_index": i, "last_index_saved": i})
    if fh is not None:
        fh.close()
    if hang:
        mot.join()
        print(json.dumps({"hanging": scan.key}), flush=True)
        while True:
            time.sleep(3600)
    scan.stop()
    scan.info["end_reason"] = "SUCCESS"
    scan.info["positioners_end"] = {"mot": 0.5 * (npoints - 1)}
    scan.close()
    print(json.dumps({"key": scan.key, "number": n}), flush=True)
