"""What a live plot keeps of scans and what it draws, without Jupyter or matplotlib.

:mod:`.data` holds bounded numpy buffers filled cheaply on every NEW_DATA event
(:class:`~beacon_ipy.liveplot.data.ScanModel`), fed by :mod:`.follower`;
:mod:`.selection` decides what to draw for a scan (BLISS's ``plots`` hints, the user's
:class:`~beacon_ipy.liveplot.selection.Choice`, remembered by :mod:`.choices`);
:mod:`.build` makes the :class:`~beacon_ipy.liveplot.frame.Frame` (:mod:`.frame`), a
decimated snapshot of copies that a drawing thread can render while ingestion goes on;
:mod:`.stats` computes BLISS's peak/com/cen/fwhm and :mod:`.images` reads detector frames.
The Jupyter side (figure, canvas, controls, greenlets) is :mod:`beacon_ipy.jupyter.liveplot`.
"""
