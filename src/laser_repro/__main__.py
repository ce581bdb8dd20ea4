"""``python -m laser_repro``: the same command as ``laser-repro``."""

import sys

from laser_repro.cli import main

if __name__ == "__main__":
    sys.exit(main())
