"""Peer: keep HDF5 files open (as a user's reader or writer would) until told to close.

Usage: saver_file_holder.py MODE FILE...   (MODE "r" or "a"; HDF5 file locking is on)
Prints {"event": "opened"}, then {"event": "closed"} after any line on stdin.
"""

import json
import sys

import h5py


def main():
    mode, paths = sys.argv[1], sys.argv[2:]
    files = [h5py.File(p, mode) for p in paths]
    entries = {p: sorted(f) for p, f in zip(paths, files, strict=True)}
    print(json.dumps({"event": "opened", "entries": entries}), flush=True)
    sys.stdin.readline()
    for f in files:
        f.close()
    print(json.dumps({"event": "closed"}), flush=True)


if __name__ == "__main__":
    main()
