"""Peer: ``beacon-ipy save`` with the given arguments (``saver_cli.py --session S --dir D``).

Only a launcher, so that tests run the real command line in a subprocess of their own.
"""

import sys

from beacon_ipy.cli import main

if __name__ == "__main__":
    sys.exit(main(["save", *sys.argv[1:]]))
