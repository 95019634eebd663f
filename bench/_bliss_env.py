"""Give bench scripts the tests' cached real-BLISS virtualenv and peer helpers.

The real-BLISS env (``tests/bliss_env.py``) and the subprocess peers (``tests/peer.py``,
``tests/peers/bliss_peer.py``) live with the tests; benches need the same ones so that
their BLISS figures come from the same installation. Importing this module puts
``tests/`` on ``sys.path`` and re-exports what benches use::

    from _bliss_env import BLISS_PEER, Peer, bliss_python   # bench/ is sys.path[0]

    python = args.bliss or bliss_python()   # builds the env once, then cached
    peer = Peer(BLISS_PEER, python=python)  # BEACON_REDIS_URL must be set

It needs no pytest. ``bliss_python()`` raises ``BlissUnavailable`` when the package
index cannot be reached (or no Python 3.11/3.12 exists), ``BlissEnvError`` otherwise.
"""

from __future__ import annotations

import sys
from pathlib import Path

_TESTS_DIR = str(Path(__file__).resolve().parent.parent / "tests")
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

from bliss_env import (  # noqa: E402
    BLISS_PEER,
    PEERS_DIR,
    BlissEnvError,
    BlissUnavailable,
    IndexUnreachable,
    bliss_python,
)
from peer import Peer  # noqa: E402

__all__ = ["BLISS_PEER", "PEERS_DIR", "BlissEnvError", "BlissUnavailable", "IndexUnreachable",
           "Peer", "bliss_python"]
