"""One sweep at a time per results folder, suite and device: an fcntl lock file.

Two sweeps resuming the same run file would each measure every point not yet ``ok`` and
append both rows. The second sweep is refused instead, with the holder's pid. The lock is
an ``flock`` on ``<out>/.<suite>_<device>.lock``: the kernel releases it when the holding
process exits, however it exits (a crash or SIGKILL included), so a stale lock file never
blocks a later run. The file itself is left in place (removing it would race with a sweep
that just opened it).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from suites.rows.store import utc_now


class SweepLocked(RuntimeError):
    """Another live sweep holds the lock of this folder, suite and device."""


def lock_path(out_dir: Path, suite: str, device: str) -> Path:
    return Path(out_dir) / f".{suite}_{device}.lock"


@contextmanager
def sweep_lock(out_dir: Path, suite: str, device: str) -> Iterator[Path]:
    """Hold the lock for the block; raise SweepLocked at once if another sweep holds it."""
    path = lock_path(out_dir, suite, device)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 (held for the whole block)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "holder unknown"
            raise SweepLocked(
                f"another sweep of {suite} on {device} is writing to {out_dir}/ ({holder}); "
                "wait for it to finish, or give this one another --out"
            ) from None
        # The holder's line only helps a refused sweep name it; the flock is the lock, so
        # a full disk that cannot take the line must not stop the sweep here.
        with contextlib.suppress(OSError):
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()} on {socket.gethostname()}, since {utc_now()}\n")
            handle.flush()
        yield path
    finally:
        with contextlib.suppress(OSError):  # a line that never reached a full disk
            handle.close()  # closing the descriptor releases the flock
