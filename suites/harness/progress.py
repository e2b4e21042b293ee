"""A progress bar that shows a long point working: elapsed time, and what the point is doing.

While a point runs, a thread refreshes the bar's postfix every second with the time spent
on the point and the last line its child wrote to a small progress file (the scale
runner writes "backward, layer 3/12"), so a half-hour point does not look hung.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def heartbeat(
    bar: Any, label: str, options: dict[str, Any], interval_s: float = 1.0
) -> Iterator[None]:
    """Within this block, show ``label``, the elapsed time and the child's progress on
    ``bar``; ``options`` gets the "progress_file" the child may write to."""
    handle, path = tempfile.mkstemp(prefix="point-progress-", suffix=".txt")
    os.close(handle)
    options["progress_file"] = path
    stop = threading.Event()
    start = time.monotonic()

    def show() -> None:
        while True:
            try:
                with open(path) as progress:
                    doing = progress.read().strip()
            except OSError:
                doing = ""
            elapsed = int(time.monotonic() - start)
            text = f"{label} {elapsed // 60}:{elapsed % 60:02d}" + (f" {doing}" if doing else "")
            bar.set_postfix_str(text, refresh=True)
            if stop.wait(interval_s):
                return

    thread = threading.Thread(target=show, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        options.pop("progress_file", None)
        with contextlib.suppress(OSError):
            os.unlink(path)
