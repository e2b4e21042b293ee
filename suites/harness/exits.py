"""Exit statuses of ``python -m suites.run`` (docs/results.md lists them for users).

``oom``, ``timeout`` and ``skipped`` are answers a sweep gives about a model; ``error`` is
a bug in a point, so a CI script must be able to tell a sweep with errors from one without.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterable, Iterator

OK = 0  # every point ok, oom, timeout or skipped (or nothing was left to measure)
SOME_ERRORS = 1  # at least one point ended in error
USAGE = 2  # bad arguments, refused before any point runs (argparse's own status)
ALL_ERRORS = 3  # every point of the sweep ended in error: nothing was measured
NOT_RECORDED = 4  # the sweep could not run or keep its rows (folder locked, disk full)
INTERRUPTED = 130  # SIGINT (128 + 2), resumable
PIPE_CLOSED = (
    141  # the sweep's output pipe closed (128 + SIGPIPE, as a shell reports it), resumable
)
TERMINATED = 143  # SIGTERM (128 + 15), resumable


def sweep_status(statuses: Iterable[str | None]) -> int:
    """OK, SOME_ERRORS or ALL_ERRORS for the statuses of a sweep's points (newest row each)."""
    statuses = list(statuses)
    errors = sum(status == "error" for status in statuses)
    if not errors:
        return OK
    return ALL_ERRORS if errors == len(statuses) else SOME_ERRORS


def closing_line(code: int, statuses: Iterable[str | None]) -> str | None:
    """The summary's last line for a sweep that ends with errors; None when it does not."""
    statuses = list(statuses)
    errors = sum(status == "error" for status in statuses)
    if code == ALL_ERRORS:
        return (
            f"exit {code}: every point ({errors}) ended in error, a failure of the harness or "
            "the code, not an answer; the error column of the results file says why"
        )
    if code == SOME_ERRORS:
        return (
            f"exit {code}: {errors} of {len(statuses)} points ended in error (oom, timeout "
            "and skipped are answers, error is a bug); the error column says why, and a rerun "
            "measures them again"
        )
    return None


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the sweep is, so it ends as Ctrl-C does: the running point
    written as interrupted (measured again on resume) and a resume hint printed."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` in the main thread."""
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
