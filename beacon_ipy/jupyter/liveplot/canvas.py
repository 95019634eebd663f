"""Where a live plot's figure is shown: an ipympl canvas, a PNG image widget, or Agg only.

``"ipympl"``
    An interactive ipympl canvas (what ``%matplotlib widget`` uses). Drawing on it
    sends the new image over the widget's comm at once (``canvas.draw()`` or
    ``canvas.blit()``); ``draw_idle()`` would only ask the browser to request a redraw,
    which a busy kernel cannot serve (NOTES §3), so it is never used.
``"image"``
    No ipympl: the figure is rendered with Agg and shown as PNG in an
    ``ipywidgets.Image`` (static, but live).
``"agg"``
    Plain Python: Agg only; snapshots as PNG.
"""

from __future__ import annotations

import importlib.util
import threading
from typing import Any

from matplotlib.figure import Figure

BACKENDS = ("auto", "ipympl", "image", "agg")


def have_ipympl() -> bool:
    return importlib.util.find_spec("ipympl") is not None


def choose_backend(requested: str, in_kernel: bool) -> str:
    """The canvas to use: ``auto`` is ipympl in a kernel if installed, else a PNG image
    widget in a kernel, else Agg."""
    if requested not in BACKENDS:
        raise ValueError(f"backend {requested!r} is not one of {BACKENDS}")
    if requested == "ipympl" and not have_ipympl():
        raise ImportError("backend='ipympl' needs the ipympl package (pip install ipympl); "
                          "or use backend='image' for a static-image live view")
    if requested != "auto":
        return requested
    if not in_kernel:
        return "agg"
    return "ipympl" if have_ipympl() else "image"


_canvas_class: Any = None


def ipympl_canvas(figure: Figure, lock: threading.RLock, title: str) -> Any:
    """An ipympl canvas (with its manager, outside pyplot's figure registry) whose
    front-end messages and notebook rendering take ``lock``: the drawing thread holds it
    while it draws."""
    global _canvas_class
    from ipympl.backend_nbagg import Canvas, FigureManager

    if _canvas_class is None:
        class LivePlotCanvas(Canvas):
            """ipympl canvas that serialises front-end messages with the drawing thread.

            Two changes to ipympl 0.10 so that a plot created by "Run All" shows frames
            while its cell is still running: ipympl waits for the browser's "initialized"
            message before sending PNG frames and sends a raw buffer (which the browser
            cannot draw) until then, but a busy kernel cannot read that message; and a view
            created or resized before the handshake has no base image for diff frames.
            A live plot always has a front end, and frames are throttled (<= 10 Hz), so
            whole PNG frames are sent from the start.
            """

            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                self.syncing_data_url = False

            def get_diff_image(self):
                self._force_full = True
                return super().get_diff_image()

            def _handle_message(self, object, content, buffers):  # noqa: A002 - ipympl's name
                with self._live_lock:
                    super()._handle_message(object, content, buffers)

            def _repr_mimebundle_(self, **kwargs):  # renders a PNG of the figure
                with self._live_lock:
                    return super()._repr_mimebundle_(**kwargs)

        _canvas_class = LivePlotCanvas
    canvas = _canvas_class(figure)
    canvas._live_lock = lock
    manager = FigureManager(canvas, 0)
    manager.set_window_title(title)
    canvas.header_visible = False
    return canvas


def image_widget(figure: Figure) -> Any:
    """An ``ipywidgets.Image`` sized like the figure, for the ``"image"`` backend."""
    import ipywidgets

    w, h = figure.bbox.size
    return ipywidgets.Image(format="png", width=int(w), height=int(h))
