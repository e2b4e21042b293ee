"""``python -m suites.quality``: see suites.quality.cli."""

import sys

from suites.quality.cli import main

sys.exit(main())
