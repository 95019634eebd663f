"""Run a REAL BLISS 2.4 ``ascan`` in library mode, finding everything through ``BEACON_HOST``.

``python bliss_ascan.py NPOINTS`` (full-BLISS interpreter, ``tests/beacon_env.py``): sets up
the fixture's session ``demo`` (``mockup`` motor ``roby``, ``simulation_diode`` counters
diode1..3), scans roby from 0 to 1 in NPOINTS intervals with ``SCAN_SAVING.writer = "null"``
(nothing written to disk) and prints one JSON line: the scan's number and, per channel, its
values as BLISS itself reads them back.
"""

import json
import sys

import bliss  # noqa: F401  (monkey-patches first)
from bliss import current_session
from bliss.common.scans import ascan
from bliss.config import static


def main() -> int:
    intervals = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    config = static.get_config()
    config.get("demo").setup({}, verbose=False)
    current_session.scan_saving.writer = "null"
    counters = [config.get(f"diode{i}") for i in (1, 2, 3)]
    scan = ascan(config.get("roby"), 0, 1, intervals, 0.001, *counters, save=False)
    data = {name: scan.streams[name][:].tolist() for name in scan.streams}
    print(json.dumps({"scan_number": scan.scan_info["scan_nb"], "data": data}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
