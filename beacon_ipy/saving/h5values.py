"""Nested dicts (scan_info, instrument metadata) into HDF5 groups, nothing dropped.

Rules (docs/saving.md):

* a dict becomes a group (``NX_class`` ``NXcollection`` unless it says otherwise with an
  ``NX_class`` key); keys that are not valid HDF5 names (``/``, ``.``, empty, not a
  string) are renamed, the original kept in the ``original_name`` attribute;
* str, bool, int (64 bit), float, complex, numpy scalars and numeric/bool/str arrays,
  lists that make a regular numeric or string array: a dataset of that type;
* bytes: an opaque dataset (``numpy.void``);
* anything else (None, mixed or ragged lists, lists of dicts, huge ints...): a string
  dataset holding JSON, with attribute ``encoding = "json"`` (numpy values inside as
  plain numbers and lists).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import h5py
import numpy as np

JSON_ATTR = "encoding"
_INT64 = (-(2**63), 2**63 - 1)


def hdf5_name(key: Any) -> str:
    """A valid HDF5 link name for ``key``."""
    name = key if isinstance(key, str) else json.dumps(to_jsonable(key))
    name = name.replace("/", "_")
    return {"": "_empty", ".": "_dot", "..": "_dotdot"}.get(name, name)


def set_nx_class(obj: h5py.Group | h5py.Dataset, nx_class: str) -> None:
    """Give ``obj`` an ``NX_class`` if it has none."""
    if "NX_class" not in obj.attrs:
        obj.attrs["NX_class"] = nx_class


def as_hdf5(value: Any) -> tuple[Any, bool]:
    """``(data, is_json)``: what to store for ``value`` in a dataset."""
    if isinstance(value, bool | np.bool_):
        return np.bool_(value), False
    if isinstance(value, str):
        return value, False
    if isinstance(value, int) and not isinstance(value, np.generic):
        if _INT64[0] <= value <= _INT64[1]:
            return np.int64(value), False
        return _json(value), True
    if isinstance(value, float | complex) and not isinstance(value, np.generic):
        return value, False
    if isinstance(value, bytes | bytearray):
        return np.void(bytes(value)), False
    if isinstance(value, np.generic):
        if value.dtype.kind in "biufc":
            return value, False
        if value.dtype.kind == "U":
            return str(value), False
        return _json(value), True
    if isinstance(value, list | tuple | np.ndarray):
        arr = _regular_array(value)
        if arr is not None:
            return arr, False
    return _json(value), True


def _regular_array(value: Any) -> np.ndarray | None:
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError):
        return None
    if arr.dtype.kind in "biufc" and arr.size >= 0 and arr.dtype.fields is None:
        if isinstance(value, list | tuple) and len(value) == 0:
            return None  # an empty list has no type: JSON "[]" says what it was
        return arr
    if arr.dtype.kind == "U" and _all_str(value):
        return arr.astype(h5py.string_dtype())
    return None


def _all_str(value: Any) -> bool:
    """True if every leaf is a string (numpy would turn [1, "a"] into ["1", "a"])."""
    if isinstance(value, str | np.str_):
        return True
    if isinstance(value, np.ndarray):
        return value.dtype.kind == "U"
    return isinstance(value, list | tuple) and all(_all_str(v) for v in value)


def _json(value: Any) -> str:
    return json.dumps(to_jsonable(value), allow_nan=False, separators=(", ", ": "))


def to_jsonable(value: Any) -> Any:
    """``value`` with numpy values, tuples, bytes and non-finite floats made JSON-able."""
    if isinstance(value, Mapping):
        return {str(k) if not isinstance(k, str) else k: to_jsonable(v)
                for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("latin-1")
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return repr(value)


def write_value(group: h5py.Group, key: Any, value: Any) -> None:
    """Store ``value`` as ``group[key]`` (a dict as a subgroup)."""
    name = _free_name(group, hdf5_name(key))
    if isinstance(value, Mapping):
        sub = group.create_group(name)
        write_dict(sub, value)
        obj: h5py.Group | h5py.Dataset = sub
    else:
        data, is_json = as_hdf5(value)
        obj = group.create_dataset(name, data=data)
        if is_json:
            obj.attrs[JSON_ATTR] = "json"
    if name != key:
        obj.attrs["original_name"] = key if isinstance(key, str) else _json(key)


def write_dict(group: h5py.Group, info: Mapping[Any, Any],
               nx_class: str = "NXcollection") -> None:
    """Write every item of ``info`` into ``group`` (recursively)."""
    cls = info.get("NX_class")
    set_nx_class(group, cls if isinstance(cls, str) else nx_class)
    for key, value in info.items():
        if key == "NX_class" and isinstance(value, str):
            continue
        write_value(group, key, value)


def _free_name(group: h5py.Group, name: str) -> str:
    if name not in group:
        return name
    k = 2
    while f"{name}_{k}" in group:
        k += 1
    return f"{name}_{k}"
