"""beacon-ipy: BLISS-style Beacon channels and live scan data, in Python and Jupyter.

Layers (a lower layer never imports an upper one):
``connection`` -> ``channels``; ``connection`` -> ``scans`` -> ``saving``;
``jupyter`` (kernel, magics, widgets, plots) on top.
"""

from __future__ import annotations

__version__ = "0.1.0"


def __getattr__(name: str):
    # Lazy, so that ``import beacon_ipy`` stays cheap and layer-clean.
    if name == "get_session_node":
        from beacon_ipy.scans import get_session_node

        return get_session_node
    raise AttributeError(f"module 'beacon_ipy' has no attribute {name!r}")


def load_ipython_extension(ipython):  # pragma: no cover - exercised through real kernels
    """Entry point of ``%load_ext beacon_ipy``."""
    from beacon_ipy.jupyter.extension import load_ipython_extension as _load

    _load(ipython)


def unload_ipython_extension(ipython):  # pragma: no cover - exercised through real kernels
    """Entry point of ``%unload_ext beacon_ipy``."""
    from beacon_ipy.jupyter.extension import unload_ipython_extension as _unload

    _unload(ipython)
