"""Jupyter layer: the ``beacon`` kernel, the ``%load_ext beacon_ipy`` extension, widgets.

This package sits on top of every other layer. Importing it is cheap on purpose: the
kernel launcher (:mod:`beacon_ipy.jupyter.kernel`) must monkey-patch with gevent before
anything imports ``socket``, ``ssl`` or ``asyncio``, so nothing heavy is imported here.
"""
