"""``python -m suites.quality [options]``: the same as ``python -m suites.run quality``.

Kept as a short alias; every option of suites.run applies, ``--data PATH`` included (a
file or folder to train the byte LM on instead of the standard library sources).
Checkpoints go under ``<out>/quality/checkpoints/``.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from suites.run import main as run_main

    return run_main(["quality", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
