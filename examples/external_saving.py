"""External saving: a separate process that saves a session's scans to one HDF5 file.

The beacon-ipy version of BLISS's ``scripts/external_saving_example``: listen to a
session, create one entry per scan, fill a dataset per channel as NEW_DATA arrives,
and at END_SCAN link the detector images (by reference, as virtual datasets) and write
the scan_info metadata.

    python examples/external_saving.py --session demo --output /tmp/demo.h5
    beacon-ipy demo --session demo --scans 3          # in another terminal
"""

from __future__ import annotations

import argparse

import gevent
import h5py
import numpy as np

from beacon_ipy import get_session_node


class HDF5Writer:
    """Writes one scan into ``h5file`` as it arrives, from its own greenlet."""

    def __init__(self, scan_node, h5file: h5py.File):
        self.scan_node = scan_node
        self.entry = h5file.create_group(f"{scan_node.info['scan_nb']}.1")
        self.entry.attrs["NX_class"] = "NXentry"
        self.entry["title"] = scan_node.info["title"]
        self.measurement = self.entry.create_group("measurement")
        self.measurement.attrs["NX_class"] = "NXcollection"
        self.lima_nodes = []
        self.greenlet = gevent.spawn(self.run)

    def run(self):
        for event_type, node, event_data in self.scan_node.walk_events():
            if event_type == "NEW_NODE" and node.type == "channel":
                self.measurement.create_dataset(node.name, shape=(0, *node.shape),
                                                maxshape=(None, *node.shape), dtype=node.dtype)
            elif event_type == "NEW_NODE" and node.type == "lima":
                self.lima_nodes.append(node)
            elif event_type == "NEW_DATA" and node.type == "channel":
                dataset = self.measurement[node.name]
                if len(dataset) < event_data.stop:
                    dataset.resize(event_data.stop, axis=0)
                dataset[event_data.start:event_data.stop] = event_data.data
            elif event_type == "END_SCAN":
                self.finalize(event_data)
                break

    def finalize(self, end):
        """Images by reference, then instrument and metadata from scan_info."""
        for node in self.lima_nodes:
            refs = node.get_references()
            if not refs:
                continue
            by_file = {}  # (file, dataset) -> [(image number, frame index in file)]
            for i, (file, path, index) in enumerate(refs):
                by_file.setdefault((file, path), []).append((i, index))
            layout = h5py.VirtualLayout(shape=(len(refs), *node.shape), dtype=node.dtype)
            for (file, path), frames in by_file.items():
                nframes = max(index for _, index in frames) + 1
                source = h5py.VirtualSource(file, path, shape=(nframes, *node.shape))
                for i, index in frames:
                    layout[i] = source[index]
            self.measurement.create_virtual_dataset(node.name, layout)
        self.entry["end_reason"] = end.reason
        positioners = self.entry.create_group("instrument/positioners_start")
        for name, value in self.scan_node.info["positioners"]["positioners_start"].items():
            positioners[name] = value
        write_dict(self.entry.create_group("scan_info"), self.scan_node.info)
        self.entry.file.flush()


def write_dict(group: h5py.Group, info: dict):
    """scan_info (a nested dict) as groups and datasets; NX_class added when missing."""
    group.attrs.setdefault("NX_class", "NXcollection")
    for key, value in info.items():
        if isinstance(value, dict):
            write_dict(group.create_group(str(key)), value)
        elif isinstance(value, str) or (isinstance(value, (list, tuple)) and any(
                isinstance(v, (dict, str)) for v in value)):
            group[str(key)] = str(value)
        elif value is not None:
            group[str(key)] = np.asarray(value)


def listen_scans_of_session(session: str, output: str, max_scans: int = 0):
    """Save every new scan of ``session``; return after ``max_scans`` ended (0 = never)."""
    session_node = get_session_node(session)
    writers = {}
    started = gevent.event.Event()  # set once the walk has taken its starting point
    started.rawlink(lambda _: print(f"listening to session {session!r}", flush=True))
    with h5py.File(output, "a") as h5file:
        for event_type, node, event_data in session_node.walk_on_new_events(
                include_filter="scan", from_next=True, started_event=started):
            if event_type == "NEW_NODE":
                writers[node.name] = HDF5Writer(node, h5file)
                print(f"new scan {node.name}", flush=True)
            elif event_type == "END_SCAN":
                writers[node.name].greenlet.get()  # its own walk saw END_SCAN too
                print(f"saved scan {node.name} ({event_data.reason})", flush=True)
                if max_scans and len(writers) >= max_scans and all(
                        w.greenlet.ready() for w in writers.values()):
                    break


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--session", default="demo")
    parser.add_argument("--output", default="external_saving.h5")
    parser.add_argument("--scans", type=int, default=0, help="stop after N scans (0 = never)")
    args = parser.parse_args()
    listen_scans_of_session(args.session, args.output, args.scans)
