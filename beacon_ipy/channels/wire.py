"""BLISS 2.4 channel messages on the wire, decoded without ever executing anything.

Every message on a channel's Redis pub/sub channel is a pickle (protocol 4) of one of
three classes that BLISS references as module ``bliss.config.channels``:

- ``_Value(id, timestamp, value)``: a namedtuple, pickled as NEWOBJ with its fields;
- ``_Query``: state ``{"name", "id"}`` (a uuid hex);
- ``_Reply``: state ``{"name", "id", "value"}`` where value is a ``_Value`` or None.

**Decoding** uses :class:`SafeUnpickler`, whose ``find_class`` admits only the names in
:data:`ALLOWED_GLOBALS`: the three message classes, a few builtin containers, a few
standard-library value types and what numpy needs to rebuild arrays, scalars and
dtypes. A message naming anything else (``os.system``, ``subprocess.Popen``, a user
class...) raises :class:`UnsafeMessageError` before any of it runs. Deployments that
really need more names call :func:`allow_global` (and take responsibility for them).

**Encoding** never needs BLISS to be importable: the message envelope is written
opcode by opcode (a ``STACK_GLOBAL`` naming ``bliss.config.channels``) around a payload
pickled by the C pickler. The payload pickler checks every global it would emit against
the same allow-list, so a value that the other side could not decode safely is refused
up front with :class:`UnsafeValueError`.
"""

from __future__ import annotations

import collections
import datetime
import io
import pickle
import struct
from typing import Any, NamedTuple

import numpy

BLISS_MODULE = "bliss.config.channels"


class WireValue(NamedTuple):
    """``bliss.config.channels._Value``: who wrote it (``id``), when, and the value."""

    id: str
    timestamp: float
    value: Any


class WireQuery:
    """``bliss.config.channels._Query``: "who holds a value for ``name``?"."""

    __slots__ = ("name", "id")

    def __init__(self, name: str = "", id: str = ""):  # noqa: A002 - BLISS's field name
        self.name = name
        self.id = id

    def __setstate__(self, state: dict) -> None:
        self.name = state["name"]
        self.id = state["id"]

    def __repr__(self) -> str:
        return f"WireQuery(name={self.name!r}, id={self.id!r})"


class WireReply:
    """``bliss.config.channels._Reply``: a subscriber's answer to query ``id``."""

    __slots__ = ("name", "id", "value")

    def __init__(self, name: str = "", id: str = "", value: WireValue | None = None):  # noqa: A002
        self.name = name
        self.id = id
        self.value = value

    def __setstate__(self, state: dict) -> None:
        self.name = state["name"]
        self.id = state["id"]
        self.value = state["value"]

    def __repr__(self) -> str:
        return f"WireReply(name={self.name!r}, id={self.id!r}, value={self.value!r})"


class UnsafeMessageError(pickle.UnpicklingError):
    """A message names a global outside the allow-list; it was not executed."""


class MalformedMessageError(ValueError):
    """A message decoded safely but is not a well-formed BLISS channel message."""


class UnsafeValueError(TypeError):
    """A value cannot be sent: a peer could not decode it without running code."""


def _numpy_core_names() -> dict[tuple[str, str], Any]:
    """numpy's pickle entry points under both the 1.x and 2.x module names."""
    try:
        from numpy._core import multiarray  # numpy >= 2 (1.26 ships an alias)
    except ImportError:  # pragma: no cover - numpy < 1.26
        from numpy.core import multiarray
    names: dict[tuple[str, str], Any] = {}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        names[(module, "_reconstruct")] = multiarray._reconstruct
        names[(module, "scalar")] = multiarray.scalar
    names[("numpy", "ndarray")] = numpy.ndarray
    names[("numpy", "dtype")] = numpy.dtype
    return names


#: (module, name) -> object that a decoded message may reference. Keep it short.
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    (BLISS_MODULE, "_Value"): WireValue,
    (BLISS_MODULE, "_Query"): WireQuery,
    (BLISS_MODULE, "_Reply"): WireReply,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "bytearray"): bytearray,
    ("builtins", "complex"): complex,
    ("builtins", "slice"): slice,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("collections", "deque"): collections.deque,
    ("datetime", "datetime"): datetime.datetime,
    ("datetime", "date"): datetime.date,
    ("datetime", "time"): datetime.time,
    ("datetime", "timedelta"): datetime.timedelta,
    ("datetime", "timezone"): datetime.timezone,
    **_numpy_core_names(),
}

# Objects a value may contain, by identity, for the encoder's check.
_SENDABLE_GLOBALS: dict[int, tuple[str, str]] = {
    id(obj): key for key, obj in ALLOWED_GLOBALS.items() if key[0] != BLISS_MODULE
}
# Types whose instances pickle without naming any global: no check needed.
ATOMIC_TYPES = frozenset({str, int, float, bool, type(None), bytes})


def allow_global(module: str, name: str, obj: Any) -> None:
    """Admit ``module.name`` (resolving to ``obj``) in decoded messages and sent values.

    Only for plain data classes whose construction cannot run arbitrary code: every
    process on the same Redis can make this process build one.
    """
    ALLOWED_GLOBALS[(module, name)] = obj
    _SENDABLE_GLOBALS[id(obj)] = (module, name)


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that resolves only allow-listed globals."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafeMessageError(
                f"message references {module}.{name}, which is not on the allow-list "
                f"(beacon_ipy.channels.wire.ALLOWED_GLOBALS); it was dropped unexecuted"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafeMessageError("message uses persistent ids; it was dropped unexecuted")


Message = WireValue | WireQuery | WireReply


def decode(payload: bytes) -> Message:
    """Decode one channel message, or raise UnsafeMessageError / MalformedMessageError."""
    try:
        msg = SafeUnpickler(io.BytesIO(payload)).load()
    except UnsafeMessageError:
        raise
    except Exception as exc:  # noqa: BLE001 - any decoding failure means a broken message
        raise MalformedMessageError(f"undecodable channel message: {exc!r}") from exc
    if isinstance(msg, WireValue):
        _check_value(msg)
    elif isinstance(msg, WireReply):
        if not isinstance(msg.id, str) or not (msg.value is None or isinstance(msg.value, WireValue)):
            raise MalformedMessageError(f"malformed reply {msg!r}")
        if msg.value is not None:
            _check_value(msg.value)
    elif isinstance(msg, WireQuery):
        if not isinstance(msg.id, str):
            raise MalformedMessageError(f"malformed query {msg!r}")
    else:
        raise MalformedMessageError(f"not a channel message: {type(msg).__name__}")
    return msg


def _check_value(value: WireValue) -> None:
    if not isinstance(value.id, str) or not isinstance(value.timestamp, (int, float)):
        raise MalformedMessageError(f"malformed value message {value!r}")


class _CheckingPickler(pickle.Pickler):
    """C pickler that refuses any global a safe peer would refuse to load."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, type) or callable(obj) and hasattr(obj, "__qualname__"):
            if id(obj) not in _SENDABLE_GLOBALS and not isinstance(obj, numpy.dtype):
                qual = f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', obj)}"
                raise UnsafeValueError(
                    f"{qual} cannot be sent on a channel: receivers only rebuild builtin "
                    f"scalars and containers, numpy arrays/scalars and "
                    f"beacon_ipy.channels.wire.ALLOWED_GLOBALS. Convert it to plain data "
                    f"(e.g. a dict or a numpy array) first."
                )
        return NotImplemented


def _pickle_payload(obj: Any) -> bytes:
    buf = io.BytesIO()
    try:
        _CheckingPickler(buf, protocol=4).dump(obj)
    except UnsafeValueError:
        raise
    except (pickle.PicklingError, TypeError, AttributeError, RecursionError) as exc:
        raise UnsafeValueError(f"value cannot be pickled for the wire: {exc}") from exc
    return buf.getvalue()


def check_sendable(value: Any) -> None:
    """Raise UnsafeValueError if ``value`` could not be sent and decoded safely."""
    if type(value) not in ATOMIC_TYPES:
        _pickle_payload(value)


# --- envelope writing --------------------------------------------------------------
_PROTO4 = b"\x80\x04"
_NEWOBJ = b"\x81"
_EMPTY_TUPLE = b")"
_EMPTY_DICT = b"}"
_MARK = b"("
_SETITEMS = b"u"
_BUILD = b"b"
_STOP = b"."
_NONE = b"N"


def _str(s: str) -> bytes:
    data = s.encode("utf-8", "surrogatepass")
    if len(data) < 256:
        return b"\x8c" + bytes((len(data),)) + data  # SHORT_BINUNICODE
    return b"X" + struct.pack("<I", len(data)) + data  # BINUNICODE


def _global(name: str) -> bytes:
    return _str(BLISS_MODULE) + _str(name) + b"\x93"  # STACK_GLOBAL, not memoized


_VALUE_CLASS = _global("_Value")
_QUERY_CLASS = _global("_Query")
_REPLY_CLASS = _global("_Reply")


def _value_ops(value: WireValue) -> bytes:
    """Opcodes that push a ``_Value``: the class, then its fields' pickle, then NEWOBJ.

    The fields are pickled by the C pickler; its stream ``PROTO ... STOP`` is spliced in
    without PROTO and with STOP replaced by NEWOBJ (same length, so any frame that held
    STOP now holds NEWOBJ). It is the only C-pickled part of a message, so its memo
    indices start at 0 as the pickler assumed.
    """
    fields = (value.id, value.timestamp, value.value)
    if type(value.value) in ATOMIC_TYPES and type(value.timestamp) is float:
        # Nothing in it names a global, so nothing to check: the plain C pickler writes
        # the same bytes 4x faster (a channel set is on a round trip's critical path).
        body = pickle.dumps(fields, 4)
    else:
        body = _pickle_payload(fields)
    return _VALUE_CLASS + body[2:-1] + _NEWOBJ


def encode_value(value: WireValue) -> bytes:
    """The bytes BLISS 2.4 publishes for ``value``."""
    return _PROTO4 + _value_ops(value) + _STOP


def encode_query(name: str, query_id: str) -> bytes:
    """The bytes of ``_Query(name, id)``: class, NEWOBJ(), BUILD(state)."""
    state = _EMPTY_DICT + _MARK + _str("name") + _str(name) + _str("id") + _str(query_id)
    return _PROTO4 + _QUERY_CLASS + _EMPTY_TUPLE + _NEWOBJ + state + _SETITEMS + _BUILD + _STOP


def encode_reply(name: str, query_id: str, value: WireValue | None) -> bytes:
    """The bytes of ``_Reply(name, id, value)``."""
    value_ops = _NONE if value is None else _value_ops(value)
    state = (_EMPTY_DICT + _MARK + _str("name") + _str(name) + _str("id") + _str(query_id)
             + _str("value") + value_ops + _SETITEMS)
    return _PROTO4 + _REPLY_CLASS + _EMPTY_TUPLE + _NEWOBJ + state + _BUILD + _STOP
