"""``python -m laser_repro``: the same command as ``laser-repro``."""

import sys

from laser_repro.cli import main

sys.exit(main())
