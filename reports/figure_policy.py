"""The policy for generated figures kept in the repository, checked in CI and by pre-commit.

Generated reports are committed under ``docs/reports/`` so a reader sees them without running
anything, but binary figures bloat every clone and make reviews noisy. So: figures live only
there (never beside code), each PNG or SVG stays under ``MAX_FIGURE_BYTES``, no Git LFS (a
clone must stay self-contained), and ``.gitattributes`` marks them generated and binary, so
diffs and reviews skip them. A figure over the cap is rebuilt at a lower ``--dpi``.

    python -m reports.figure_policy [PATH ...]   # exit 1 naming each file that breaks it
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

MAX_FIGURE_BYTES = 1 << 20
FIGURE_SUFFIXES = (".png", ".svg")
FIGURE_HOME = "docs/reports/"


def tracked_figures(root: Path) -> list[Path]:
    """Every PNG/SVG file git tracks below ``root`` (falls back to a walk outside git)."""
    try:
        listed = (
            subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True)
            .stdout.decode()
            .split("\0")
        )
        paths = [Path(name) for name in listed if name]
    except (OSError, subprocess.CalledProcessError):
        paths = [p.relative_to(root) for p in root.rglob("*") if p.is_file()]
    return sorted(p for p in paths if p.suffix.lower() in FIGURE_SUFFIXES)


def violations(root: Path, paths: list[Path]) -> list[str]:
    """One message per figure outside ``FIGURE_HOME`` or over ``MAX_FIGURE_BYTES``."""
    problems = []
    for path in paths:
        posix = path.as_posix()
        if not posix.startswith(FIGURE_HOME):
            problems.append(f"{posix}: generated figures belong under {FIGURE_HOME}")
        size = (root / path).stat().st_size
        if size > MAX_FIGURE_BYTES:
            problems.append(
                f"{posix}: {size} bytes, over the {MAX_FIGURE_BYTES}-byte cap; "
                "rebuild the report with a lower --dpi"
            )
    return problems


def main(argv: list[str] | None = None) -> int:
    root = Path.cwd()
    args = sys.argv[1:] if argv is None else argv
    paths = [Path(a) for a in args] if args else tracked_figures(root)
    problems = violations(root, [p for p in paths if p.suffix.lower() in FIGURE_SUFFIXES])
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
