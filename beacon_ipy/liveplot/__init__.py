"""What a live plot keeps of scans and what it draws, without Jupyter or matplotlib.

:mod:`.data` holds bounded numpy buffers filled cheaply on every NEW_DATA event
(:class:`~beacon_ipy.liveplot.data.ScanModel`); :mod:`.frame` builds a
:class:`~beacon_ipy.liveplot.frame.Frame`, a decimated snapshot of copies that a drawing
thread can render while ingestion goes on. The Jupyter side (figure, canvas, greenlets)
is :mod:`beacon_ipy.jupyter.liveplot`.
"""
