"""The session master file: external links to every saved scan, replaced atomically.

The master ``<dir>/<session>.h5`` is never modified in place: each update writes a new
file ``.<session>.h5.tmp`` from the list of complete scan files in the session
directory, fsyncs it and renames it over the master. A crash leaves either the old or
the new master, both readable; a reader holding the old one open keeps a consistent
view (and never blocks the saver: no HDF5 lock is shared between the two inodes). As
the master is derived from the scan files only, rebuilding it is also how it is
repaired.
"""

from __future__ import annotations

import contextlib
import os

import h5py

import beacon_ipy
from beacon_ipy.saving.blocking import fsync_path
from beacon_ipy.saving.failpoints import failpoint
from beacon_ipy.saving.layout import SaveLayout


def rebuild_master(layout: SaveLayout, scan_nb: int | None = None) -> int:
    """Write the master file from the scan files present; return the number of links.

    ``scan_nb``: the scan whose saving asked for it (for crash injection only).
    """
    files = layout.saved_files()
    tmp = layout.master_tmp
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        with h5py.File(tmp, "w", libver=("v110", "v110")) as fh:
            fh.attrs["NX_class"] = "NXroot"
            fh.attrs["creator"] = f"beacon-ipy {beacon_ipy.__version__}"
            fh.attrs["file_name"] = layout.master.name
            for saved in files:
                rel = os.path.relpath(saved.path, layout.directory)
                fh[saved.link_name] = h5py.ExternalLink(rel, f"/{saved.entry_name}")
            if files:
                fh.attrs["default"] = files[-1].link_name
        fsync_path(tmp)
        failpoint("before_master_replace", scan_nb)
        os.replace(tmp, layout.master)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_path(layout.directory, directory=True)
    return len(files)
