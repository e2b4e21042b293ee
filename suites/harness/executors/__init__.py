"""Where a sweep's points are measured: here, one at a time (``local``), or as Ray tasks.

An executor takes jobs (a point, its timeout and memory cap, optionally the hardware kind
it must run on) and hands back results as they finish, each with the job's ident and the
hardware kind that measured it (what the point's key is hashed with). Every executor runs
a point through :func:`suites.harness.isolation.run_point`, so a point always has its own child
process, memory cap, timeout and status; only where that child runs differs.

:mod:`suites.harness.executors.dispatch` drives an executor over a sweep: the order of a family's
lengths, skipping after an ``oom`` or ``timeout``, and the progress bar.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from suites.harness.points import Point

EXECUTORS = ("local", "ray")


@dataclass(frozen=True, kw_only=True)
class Job:
    """One point to measure."""

    ident: int  # the dispatcher's handle; results come back under it
    point: Point
    timeout_s: float
    max_memory_gb: float | None
    hardware: str | None = None  # measure on this hardware kind only (--per-hardware)


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


def open_executor(
    name: str, *, device: str, hardware: str, address: str | None = None, log: Any = None
) -> Executor:
    """``local``: this process, one point at a time, on ``hardware`` (the driver's).
    ``ray``: one Ray task per point on the cluster at ``address`` (None: the one this
    process is connected to, else a new local one)."""
    if name == "local":
        from suites.harness.executors.local import LocalExecutor

        return LocalExecutor(hardware)
    if name == "ray":
        from suites.harness.executors.ray_executor import RayExecutor

        return RayExecutor(device=device, address=address, log=log)
    raise ValueError(f"executor={name!r} is unknown; allowed: {EXECUTORS}")
