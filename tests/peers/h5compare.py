"""Entry-by-entry comparison of two NeXus files (beacon-ipy's saver vs BLISS's writer).

Same members, same link kinds and targets (soft links by path; external links by
target path and resolved data), same attributes, same datasets (dtype, shape, values;
virtual datasets resolved to their data). ``allowed`` names deliberate differences
(docs/saving.md "Following h5maps"), as paths relative to the entry.
"""

from __future__ import annotations

import h5py
import numpy as np


def compare_entries(ours: h5py.Group, theirs: h5py.Group, allowed: frozenset[str] = frozenset()
                    ) -> list[str]:
    """Every path compared (relative to the entry); asserts on the first difference."""
    seen: list[str] = []
    _group(ours, theirs, "", allowed, seen)
    return seen


def _group(a: h5py.Group, b: h5py.Group, rel: str, allowed, seen) -> None:
    names_a = {n for n in a if f"{rel}{n}" not in allowed}
    names_b = {n for n in b if f"{rel}{n}" not in allowed}
    assert names_a == names_b, f"/{rel}: members differ: ours only {sorted(names_a - names_b)}, " \
                               f"blisswriter only {sorted(names_b - names_a)}"
    _attrs(a, b, rel or "/")
    for name in sorted(names_a):
        path = f"{rel}{name}"
        seen.append(path)
        la, lb = a.get(name, getlink=True), b.get(name, getlink=True)
        assert type(la) is type(lb), f"{path}: {type(la).__name__} vs {type(lb).__name__}"
        if isinstance(la, h5py.SoftLink):
            assert la.path == lb.path, f"{path}: soft link to {la.path} vs {lb.path}"
        elif isinstance(la, h5py.ExternalLink):
            assert la.path == lb.path, f"{path}: external link to {la.path} vs {lb.path}"
        oa, ob = a.get(name), b.get(name)
        if oa is None or ob is None:  # a dangling link: dangling in both
            assert oa is None and ob is None, f"{path}: dangles in one file only"
            continue
        if isinstance(oa, h5py.Group):
            assert isinstance(ob, h5py.Group), f"{path}: group vs dataset"
            if isinstance(la, h5py.HardLink):
                _group(oa, ob, f"{path}/", allowed, seen)
            continue
        assert isinstance(ob, h5py.Dataset), f"{path}: dataset vs group"
        dataset(oa, ob, path)


def dataset(da: h5py.Dataset, db: h5py.Dataset, path: str) -> None:
    assert (da.shape, da.dtype) == (db.shape, db.dtype), \
        f"{path}: {da.shape} {da.dtype} vs {db.shape} {db.dtype}"
    assert da.is_virtual == db.is_virtual, f"{path}: virtual in one file only"
    _attrs(da, db, path)
    va, vb = da[()], db[()]
    if np.asarray(va).dtype.kind in "fc":
        np.testing.assert_array_equal(va, vb, err_msg=path)  # NaN == NaN here
    else:
        assert np.array_equal(np.asarray(va), np.asarray(vb)), f"{path}: {va!r} vs {vb!r}"


def _attrs(a, b, path: str) -> None:
    assert sorted(a.attrs) == sorted(b.attrs), \
        f"{path}: attributes {sorted(a.attrs)} vs {sorted(b.attrs)}"
    for key in a.attrs:
        va, vb = a.attrs[key], b.attrs[key]
        assert type(va) is type(vb) and np.array_equal(np.asarray(va), np.asarray(vb)), \
            f"{path}@{key}: {va!r} vs {vb!r}"
        if isinstance(va, np.ndarray):
            assert va.dtype == vb.dtype, f"{path}@{key}: {va.dtype} vs {vb.dtype}"
