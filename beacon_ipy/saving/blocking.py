"""Blocking work (h5py, fsync, rename) off the gevent hub's thread.

h5py calls block in C for as long as the disk wants; run in the hub's thread they would
freeze every greenlet (Redis readers, heartbeats, a Jupyter kernel's event loop). They
run in gevent's threadpool instead; the calling greenlet waits cooperatively. h5py
serialises its own calls with a global lock, so files may be used from several worker
threads, one call at a time per file (each caller awaits its call).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

from gevent.hub import get_hub

T = TypeVar("T")


def run_blocking(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``func(*args, **kwargs)`` in gevent's threadpool; return its result or raise."""
    return get_hub().threadpool.apply(func, args, kwargs)


def spawn_blocking(func: Callable[..., Any], *args: Any, **kwargs: Any):
    """Start ``func`` in gevent's threadpool; returns an AsyncResult-like (``.get()``)."""
    return get_hub().threadpool.spawn(func, *args, **kwargs)


def fsync_path(path: str | os.PathLike, directory: bool = False) -> None:
    """fsync a file (or a directory, to make a rename in it durable)."""
    flags = os.O_RDONLY | (os.O_DIRECTORY if directory else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
