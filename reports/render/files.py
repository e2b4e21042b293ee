"""Report files are written whole or not at all.

A figure or page is written to a temporary name beside its target and renamed over it, so
a full disk or an interrupted build never leaves a truncated PNG or half a report behind
(the previous file, if any, stays as it was); the OSError goes up to ``reports.build``,
which names the file and exits with its own status.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path


def write_whole(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write(temporary)`` and rename the result to ``path``; on failure remove the
    temporary and raise the error."""
    temporary = path.with_name(f".{path.name}.partial")
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise


def write_text_whole(path: Path, text: str) -> None:
    write_whole(path, lambda target: target.write_text(text, encoding="utf-8"))
