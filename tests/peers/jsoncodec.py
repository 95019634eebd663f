"""Tagged JSON for channel values crossing the test <-> peer pipe.

Peers and tests exchange channel values as JSON lines. Plain JSON loses numpy arrays,
tuples, bytes and dicts with non-string keys, which are exactly the values whose
round trip interoperability tests must check. This module tags them so that they come
back as the same Python objects on the other side.

It depends only on the standard library and numpy, and must never import beacon_ipy:
it is imported both by tests (beacon_ipy's environment, numpy 2) and by peers running
under real BLISS (a separate virtualenv, numpy 1.26). Tags::

    {"__ndarray__": {"dtype": "<f8", "shape": [2, 3], "data": [...flat list...]}}
    {"__tuple__": [...]}
    {"__bytes__": "<base64>"}
    {"__dict__": [[key, value], ...]}   # only when some key is not a str

numpy scalars travel as plain Python numbers (``.item()``).
"""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy

_TAGS = ("__ndarray__", "__tuple__", "__bytes__", "__dict__")


def encode(value: Any) -> Any:
    """Return a JSON-serialisable form of ``value`` (tagging what plain JSON would lose)."""
    if isinstance(value, numpy.ndarray):
        if value.dtype.fields is not None or value.dtype.kind in "cOV":
            raise TypeError(f"jsoncodec: arrays of dtype {value.dtype} are not supported")
        return {"__ndarray__": {"dtype": value.dtype.str, "shape": list(value.shape),
                                "data": value.ravel().tolist()}}
    if isinstance(value, numpy.generic):
        return value.item()
    if isinstance(value, tuple):
        return {"__tuple__": [encode(v) for v in value]}
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return {"__bytes__": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value) and not (len(value) == 1 and
                                                             next(iter(value)) in _TAGS):
            return {k: encode(v) for k, v in value.items()}
        return {"__dict__": [[encode(k), encode(v)] for k, v in value.items()]}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"jsoncodec: cannot encode {type(value).__name__} value {value!r}")


def decode(data: Any) -> Any:
    """Inverse of :func:`encode`."""
    if isinstance(data, list):
        return [decode(v) for v in data]
    if isinstance(data, dict):
        if len(data) == 1:
            (tag, body), = data.items()
            if tag == "__ndarray__":
                return numpy.array(body["data"], dtype=numpy.dtype(body["dtype"])).reshape(
                    body["shape"])
            if tag == "__tuple__":
                return tuple(decode(v) for v in body)
            if tag == "__bytes__":
                return base64.b64decode(body)
            if tag == "__dict__":
                return {decode(k): decode(v) for k, v in body}
        return {k: decode(v) for k, v in data.items()}
    return data


def dumps(obj: Any) -> str:
    """One JSON line (no newline) for ``obj``, with values tagged."""
    return json.dumps(encode(obj))


def loads(line: str | bytes) -> Any:
    """Parse one JSON line produced by :func:`dumps`."""
    return decode(json.loads(line))
