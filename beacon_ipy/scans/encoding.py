"""JSON with a small tagged encoding, so that scan_info survives Redis exactly.

Nothing read from Redis is ever executed (no pickle). Plain JSON values stay as they
are; the few Python/numpy values JSON cannot carry become a one-key-tagged object
``{"__bipy__": <tag>, ...}``:

==========  =====================================================================
tag         meaning
==========  =====================================================================
``float``   ``{"value": "nan" | "inf" | "-inf"}``, a non-finite Python float
``np``      ``{"dtype": "<f4", "b64": ...}``, a numpy scalar (exact bytes)
``nd``      ``{"dtype": "<f8", "shape": [2, 3], "b64": ...}``, a numpy array (C order)
``bytes``   ``{"b64": ...}``, a ``bytes`` value
``tuple``   ``{"items": [...]}``, a tuple (JSON has lists only)
``dict``    ``{"items": [[key, value], ...]}``, a dict with non-string keys or a
            ``"__bipy__"`` key of its own
==========  =====================================================================

Object arrays, sets and arbitrary objects raise ``TypeError`` naming the offending path.
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any

import numpy as np

TAG = "__bipy__"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def to_jsonable(obj: Any, path: str = "$") -> Any:
    """``obj`` turned into plain JSON values, with tagged objects where needed."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int) and not isinstance(obj, np.generic):
        return obj
    if isinstance(obj, float) and not isinstance(obj, np.generic):
        if math.isfinite(obj):
            return obj
        return {TAG: "float", "value": "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")}
    if isinstance(obj, np.generic):
        if obj.dtype.kind == "O":
            raise TypeError(f"{path}: numpy object scalars cannot be stored")
        return {TAG: "np", "dtype": obj.dtype.str, "b64": _b64(obj.tobytes())}
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind == "O" or obj.dtype.fields is not None:
            raise TypeError(
                f"{path}: numpy arrays of dtype {obj.dtype} cannot be stored; "
                f"convert to a plain numeric array or a list"
            )
        arr = np.ascontiguousarray(obj)
        return {TAG: "nd", "dtype": arr.dtype.str, "shape": list(arr.shape),
                "b64": _b64(arr.tobytes())}
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return {TAG: "bytes", "b64": _b64(bytes(obj))}
    if isinstance(obj, tuple):
        return {TAG: "tuple", "items": [to_jsonable(v, f"{path}[{i}]") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [to_jsonable(v, f"{path}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj) and TAG not in obj:
            return {k: to_jsonable(v, f"{path}.{k}") for k, v in obj.items()}
        return {TAG: "dict", "items": [[to_jsonable(k, f"{path}<key>"),
                                        to_jsonable(v, f"{path}[{k!r}]")]
                                       for k, v in obj.items()]}
    raise TypeError(
        f"{path}: cannot store a {type(obj).__name__} in scan_info; use JSON values, "
        f"numpy scalars/arrays, bytes, tuples or dicts"
    )


def _untag(obj: dict) -> Any:
    tag = obj[TAG]
    if tag == "float":
        return float(obj["value"])
    if tag == "np":
        return np.frombuffer(base64.b64decode(obj["b64"]), dtype=np.dtype(obj["dtype"]))[0]
    if tag == "nd":
        data = base64.b64decode(obj["b64"])
        return np.frombuffer(data, dtype=np.dtype(obj["dtype"])).reshape(obj["shape"]).copy()
    if tag == "bytes":
        return base64.b64decode(obj["b64"])
    if tag == "tuple":
        return tuple(from_jsonable(v) for v in obj["items"])
    if tag == "dict":
        return {_hashable(from_jsonable(k)): from_jsonable(v) for k, v in obj["items"]}
    raise ValueError(f"unknown tag {tag!r} in stored JSON")


def _hashable(key: Any) -> Any:
    return key.item() if isinstance(key, np.generic) else key


def from_jsonable(obj: Any) -> Any:
    """Inverse of :func:`to_jsonable`."""
    if isinstance(obj, list):
        return [from_jsonable(v) for v in obj]
    if isinstance(obj, dict):
        if TAG in obj:
            return _untag(obj)
        return {k: from_jsonable(v) for k, v in obj.items()}
    return obj


def dumps(obj: Any) -> str:
    """Encode ``obj`` as tagged JSON text."""
    return json.dumps(to_jsonable(obj), allow_nan=False, separators=(",", ":"))


def loads(text: str | bytes) -> Any:
    """Decode tagged JSON text (raises ValueError on malformed input)."""
    return from_jsonable(json.loads(text))
