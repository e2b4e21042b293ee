"""What an executor takes and hands back (:class:`Job`, :class:`Finished`), and what every
executor offers (:class:`Executor`); apart from suites.harness.executors so the executors
and the dispatcher import these without importing the package that picks an executor."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from suites.harness.points import Point


@dataclass(frozen=True, kw_only=True)
class Job:
    """One point to measure."""

    ident: int  # the dispatcher's handle; results come back under it
    point: Point
    timeout_s: float
    max_memory_gb: float | None
    hardware: str | None = None  # measure on this hardware kind only (--per-hardware)
    # What is left of the point's family, this point included (the sum of its points'
    # Point.cost(): their lengths, unless a suite says what they cost): an executor that
    # picks among waiting jobs starts the biggest first, so the family that takes longest
    # is not the one left running alone at the end.
    family_work: float = 0.0


@dataclass(frozen=True, kw_only=True)
class Finished:
    """A job's outcome: run_point's fields (status, error, wall_s, measurements), and from
    a remote node its environment fields too, which replace the driver's in the row."""

    ident: int
    result: dict[str, Any]
    hardware: str  # the hardware kind that measured it (suites.rows.names.hardware_name)


class Executor(Protocol):
    # True where finished() measures the job in this process before returning (local),
    # so the sweep shows the running point's progress meanwhile.
    blocking: bool

    def hardware(self) -> list[str]:
        """The hardware kinds this executor can measure on (one for ``local``)."""

    def has_room(self) -> bool:
        """Whether another job may be submitted now (more queue up inside Ray)."""

    def submit(self, job: Job) -> None:
        """Start measuring a job (returns at once, except where noted by the executor)."""

    def finished(self, wait_s: float) -> list[Finished]:
        """Jobs finished since the last call; waits up to ``wait_s`` for the first one."""

    def cancel(self, ident: int) -> None:
        """Stop a submitted job; it never comes back from :meth:`finished`."""

    def busy(self) -> int:
        """Jobs being measured right now (started, not finished)."""

    def close(self) -> None:
        """Cancel what is still running and release the executor's resources."""
