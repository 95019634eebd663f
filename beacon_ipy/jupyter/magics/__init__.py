"""``%channel``, ``%eventpost``, ``%savescans``, ``%liveplot``: thin magics over the Python API.

:mod:`.core` holds the magics, :mod:`.line` splits their lines, :mod:`.tables` renders
the channel table and the saver's status. The magics call plain Python functions:
:func:`beacon_ipy.channels.open_channels`, ``Channel.get(timeout=...)``,
:mod:`beacon_ipy.saving.background` (``start_saving`` / ``stop_saving``),
:mod:`beacon_ipy.jupyter.widgets` and :mod:`beacon_ipy.jupyter.liveplot`.
"""

from beacon_ipy.jupyter.magics.core import MAGIC_NAMES, BeaconMagics, SaverStopper
from beacon_ipy.jupyter.magics.line import split_line
from beacon_ipy.jupyter.magics.tables import ChannelTable, SaverStatusView

__all__ = ["MAGIC_NAMES", "BeaconMagics", "ChannelTable", "SaverStatusView", "SaverStopper",
           "split_line"]
