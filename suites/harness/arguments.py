"""Value checks for the command line, as argparse ``type=`` functions, in one place.

A nonsense value (``--timeout 0``, ``--threads -1``, an ``--out`` that is a file) is refused
while the arguments are parsed: argparse prints ``argument --FLAG: <message>`` and exits
with status 2, before any point runs. A new numeric flag picks one of these, or adds one
here beside them.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def positive_int(text: str) -> int:
    """An integer >= 1 (thread counts, seeds)."""
    return _whole_number(text, 1)


def non_negative_int(text: str) -> int:
    """An integer >= 0 (a byte count, where 0 means the platform's default)."""
    return _whole_number(text, 0)


def _whole_number(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = least - 1  # refused below, with the same message
    if value < least:
        raise argparse.ArgumentTypeError(f"must be a whole number >= {least}; got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (seconds, GiB)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number > 0; got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0; got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (a sampling temperature, where 0 means greedy)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number >= 0; got {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0; got {text!r}")
    return value


def at_most(parse: Callable[[str], Any], limit: float, why: str) -> Callable[[str], Any]:
    """``parse``, and refused above ``limit`` (``why`` says what breaks there): a value no
    run can use (a timeout past the timers' range, more threads than a process can start)
    fails here, not in the middle of a sweep."""

    def bounded(text: str) -> Any:
        value = parse(text)
        if value > limit:
            raise argparse.ArgumentTypeError(f"must be at most {limit:g} ({why}); got {text!r}")
        return value

    return bounded


# Upper bounds of the command line's numbers, each with the reason it stops there.
MAX_TIMEOUT_S = 7 * 24 * 3600  # a week: longer waits overflow the timers a point runs under
MAX_THREADS = 4096  # torch takes a C int; far above any machine's cores
MAX_MMAP_THRESHOLD = 32 * 2**20  # glibc's largest on 64-bit: above it, it keeps its default
MAX_SEEDS = 100  # each seed trains every quality model again


def output_folder(text: str) -> Path:
    """A folder this process can write into, or one it can create (nothing is created here).

    Refused: an existing regular file (or anything else that is not a folder), a folder that
    cannot be written, and a missing folder whose nearest existing parent cannot be written.
    """
    if not text.strip():
        # Path("") is the current folder: rows would land wherever the command was typed.
        raise argparse.ArgumentTypeError("is empty; give a folder name (it is created if missing)")
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(
            f"{text!r} exists and is not a folder; give a folder (it is created if missing)"
        )
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise argparse.ArgumentTypeError(
            f"{text!r} cannot be created: {str(existing)!r} is not a folder"
        )
    if not _writable(existing):
        where = "" if existing == path else f" (its parent {str(existing)!r} is not writable)"
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a writable folder{where}; give a folder you can write to"
        )
    return path


def _writable(folder: Path) -> bool:
    """Whether a file can be created in ``folder`` (tried, not guessed from mode bits)."""
    if not os.access(folder, os.W_OK | os.X_OK):
        return False
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False
