"""Helpers shared by the saver tests (not a peer script): NeXus validation, file comparison."""

from __future__ import annotations

import math
from pathlib import Path

import h5py
import numpy as np

PEERS = Path(__file__).parent


def nxdata_groups(h5: h5py.File) -> list[h5py.Group]:
    """Every NXdata group of a file (following its entries, external links included)."""
    found = []

    def visit(group: h5py.Group, depth: int = 0) -> None:
        for name in group:
            link = group.get(name, getlink=True)
            if isinstance(link, h5py.SoftLink):
                continue
            obj = group.get(name)
            if isinstance(obj, h5py.Group):
                if _attr(obj, "NX_class") == "NXdata":
                    found.append(obj)
                elif depth < 2:
                    visit(obj, depth + 1)

    visit(h5)
    return found


def _attr(obj, name):
    value = obj.attrs.get(name)
    return value.decode() if isinstance(value, bytes) else value


def validate_nexus(path: Path) -> dict:
    """Open ``path`` with h5py, silx and nexusformat; return {entry: default NXdata name}.

    Asserts that every NXdata is valid for silx and that the @default chain resolves.
    """
    from nexusformat.nexus import nxload
    from silx.io import nxdata

    defaults = {}
    with h5py.File(path, "r") as h5:
        assert _attr(h5, "NX_class") == "NXroot"
        groups = nxdata_groups(h5)
        assert groups, f"{path}: no NXdata group"
        for group in groups:
            assert nxdata.is_valid_nxdata(group), f"{path}: invalid NXdata {group.name}"
        default = nxdata.get_default(h5)
        assert default is not None, f"{path}: @default chain does not reach an NXdata"
        for name in h5:
            entry = h5[name]
            assert _attr(entry, "NX_class") == "NXentry"
            assert nxdata.get_default(entry) is not None, f"{path}:{name} has no default plot"
            defaults[name] = _attr(entry, "default")
            for key in ("title", "start_time", "end_time", "end_reason"):
                assert key in entry, f"{path}:{name} lacks {key}"
            assert _attr(entry["instrument"], "NX_class") == "NXinstrument"
            assert _attr(entry["measurement"], "NX_class") == "NXcollection"
    root = nxload(str(path))
    for name in defaults:
        entry = root[name]
        if getattr(entry, "is_external", lambda: False)():
            entry = entry.nxlink  # the master file's external link, resolved
        assert entry.nxclass == "NXentry"
        for field in entry.measurement.values():
            if type(field).__name__ == "NXlinkfield":
                # a soft link (BLISS's measurement/ in h5maps layouts): nexusformat
                # resolves it in the file it was opened from, not in the scan file an
                # external link leads to; h5py and silx follow it (checked above)
                continue
            if type(field).__name__ == "NXvirtualfield":
                # nexusformat models a virtual dataset as one frame per source file, so
                # it misreads image stacks with several frames per detector file (as
                # Lima writes them); h5py and silx read them (checked above and by callers)
                continue
            assert field.nxdata is not None  # every channel read through nexusformat
    return defaults


def text(dataset: h5py.Dataset) -> str:
    value = dataset[()]
    return value.decode() if isinstance(value, bytes) else str(value)


def compare_files(a: Path, b: Path) -> None:
    """Assert that two HDF5 files hold the same tree: groups, links, attributes, data."""
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        _compare_group(fa, fb, "/")


def _compare_group(ga: h5py.Group, gb: h5py.Group, path: str) -> None:
    assert sorted(ga) == sorted(gb), f"{path}: members {sorted(ga)} != {sorted(gb)}"
    _compare_attrs(ga, gb, path)
    for name in ga:
        la, lb = ga.get(name, getlink=True), gb.get(name, getlink=True)
        assert type(la) is type(lb), f"{path}{name}: link kinds differ"
        if isinstance(la, h5py.ExternalLink):
            assert (la.filename, la.path) == (lb.filename, lb.path), f"{path}{name}"
            continue
        oa, ob = ga[name], gb[name]
        if isinstance(oa, h5py.Group):
            assert isinstance(ob, h5py.Group), f"{path}{name}: group vs dataset"
            _compare_group(oa, ob, f"{path}{name}/")
        else:
            _compare_dataset(oa, ob, f"{path}{name}")


def _compare_attrs(oa, ob, path: str) -> None:
    assert sorted(oa.attrs) == sorted(ob.attrs), f"{path}: attributes differ"
    for key in oa.attrs:
        va, vb = oa.attrs[key], ob.attrs[key]
        assert np.array_equal(np.asarray(va), np.asarray(vb)), f"{path}@{key}: {va!r} {vb!r}"


def _compare_dataset(da: h5py.Dataset, db: h5py.Dataset, path: str) -> None:
    assert da.shape == db.shape and da.dtype == db.dtype, (
        f"{path}: {da.shape} {da.dtype} != {db.shape} {db.dtype}")
    assert da.is_virtual == db.is_virtual, f"{path}: virtual or not"
    if da.is_virtual:
        sa = [(v.file_name, v.dset_name) for v in da.virtual_sources()]
        sb = [(v.file_name, v.dset_name) for v in db.virtual_sources()]
        assert sa == sb, f"{path}: virtual sources differ"
    _compare_attrs(da, db, path)
    va, vb = da[()], db[()]
    if isinstance(va, np.ndarray) and va.dtype.kind == "f":
        assert np.array_equal(va, vb, equal_nan=True), f"{path}: data differ"
    elif isinstance(va, float) and math.isnan(va):
        assert math.isnan(vb), path
    else:
        assert np.array_equal(np.asarray(va), np.asarray(vb)), f"{path}: {va!r} != {vb!r}"


def complete_files(directory: Path, session: str) -> list[Path]:
    return sorted((directory / session).glob("scan*.h5"))


class SmallFs:
    """A tmpfs of a given size mounted on ``path`` (needs root): disk full, read-only."""

    def __init__(self, path: Path, size: str):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._mount("-t", "tmpfs", "-o", f"size={size},mode=0777", "tmpfs")

    def _mount(self, *args: str) -> None:
        import subprocess

        result = subprocess.run(["mount", *args, str(self.path)], capture_output=True,
                                text=True, timeout=30)
        if result.returncode:
            raise OSError(f"mount {' '.join(args)} {self.path}: {result.stderr.strip()}")

    def resize(self, size: str) -> None:
        self._mount("-o", f"remount,size={size}")

    def read_only(self, flag: bool) -> None:
        self._mount("-o", "remount,ro" if flag else "remount,rw")

    def close(self) -> None:
        import subprocess

        subprocess.run(["umount", "-l", str(self.path)], capture_output=True, timeout=30)


def try_small_fs(path: Path, size: str) -> SmallFs | None:
    """A :class:`SmallFs`, or None where mounting is not allowed (not root, container)."""
    import os

    if os.geteuid() != 0:
        return None
    try:
        return SmallFs(path, size)
    except (OSError, FileNotFoundError):
        return None


class SaverProcess:
    """``beacon-ipy save --json`` in a subprocess; its JSON lines read with deadlines.

    stderr goes to a file (a saver logging retries must never block on a full pipe).
    """

    def __init__(self, session: str, directory: Path, *args: str, log: Path,
                 env: dict | None = None, preexec_fn=None):
        import os
        import sys

        from gevent import subprocess

        full_env = dict(os.environ, PYTHONUNBUFFERED="1")
        full_env.update(env or {})
        self.log = Path(log)
        self._log = open(self.log, "a")  # noqa: SIM115 - closed in wait()
        self.args = [sys.executable, str(PEERS / "saver_cli.py"), "--session", session,
                     "--dir", str(directory), "--json", *args]
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=self._log,
                                     stdin=subprocess.DEVNULL, text=True, env=full_env,
                                     preexec_fn=preexec_fn)
        self.events: list[dict] = []

    @property
    def pid(self) -> int:
        return self.proc.pid

    def read(self, timeout: float = 20.0) -> dict | None:
        """The next event, or None once the process has exited."""
        import json

        import gevent

        with gevent.Timeout(timeout, TimeoutError(f"saver said nothing in {timeout} s; "
                                                  f"log: {self.stderr()[-3000:]}")):
            line = self.proc.stdout.readline()
        if not line:
            return None
        event = json.loads(line)
        self.events.append(event)
        return event

    def expect(self, event: str, timeout: float = 20.0, **fields) -> dict:
        """Read until an event named ``event`` whose items include ``fields``."""
        import time

        deadline = time.monotonic() + timeout
        while True:
            msg = self.read(max(0.01, deadline - time.monotonic()))
            if msg is None:
                raise AssertionError(f"saver exited ({self.proc.wait()}) before {event} "
                                     f"{fields}; log: {self.stderr()[-3000:]}")
            if msg.get("event") == event and all(msg.get(k) == v for k, v in fields.items()):
                return msg

    def stderr(self) -> str:
        self._log.flush()
        return self.log.read_text()

    def terminate(self, timeout: float = 20.0) -> int:
        import signal

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill9(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.wait()

    def wait(self, timeout: float = 20.0) -> int:
        """Wait for the exit (kill after ``timeout``); the last events are read too."""
        import json

        try:
            code = self.proc.wait(timeout=timeout)
        except Exception:
            self.proc.kill()
            code = self.proc.wait()
        if not self.proc.stdout.closed:
            for line in self.proc.stdout.read().splitlines():
                if line.strip():
                    self.events.append(json.loads(line))
            self.proc.stdout.close()
        self._log.close()
        return code

    def __enter__(self) -> SaverProcess:
        return self

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            self.kill9()


def is_pending(directory, session: str, scan_key: str, url: str | None = None) -> bool:
    """True if the saver of ``directory`` has a "saver pending" marker on the scan."""
    from beacon_ipy.connection import get_redis
    from beacon_ipy.saving import SaveLayout
    from beacon_ipy.saving.pending import PendingMarks
    from beacon_ipy.scans.bdgaps import data_url

    client = get_redis(data_url(url))
    return PendingMarks(client, SaveLayout(directory, session).holder).is_marked(scan_key)


def load_scan(scan_key: str, url: str | None = None):
    """The blissdata scan ``scan_key`` (read-only), as another reader sees it."""
    from beacon_ipy.scans.bdgaps import data_store

    return data_store(url).load_scan(scan_key)
