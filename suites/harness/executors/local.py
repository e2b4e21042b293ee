"""The ``local`` executor: points one at a time, each in a child of this process."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from suites.harness.executors.jobs import Finished, Job
from suites.harness.isolation import run_point


def measure_job(job: Job, started: Callable[[Any], None] | None = None) -> dict[str, Any]:
    """Measure a job's point in a child of this process (run_point's fields)."""
    point = job.point
    return run_point(
        point.runner,
        point.params,
        point.runner_options(),
        timeout_s=job.timeout_s,
        max_memory_gb=job.max_memory_gb,
        started=started,
    )


class LocalExecutor:
    """Holds at most one job; :meth:`finished` measures it (blocking) and returns it."""

    # finished() measures the point before it returns, so the sweep shows its progress.
    blocking = True

    def __init__(self, hardware: str) -> None:
        self._hardware = hardware
        self._job: Job | None = None

    def hardware(self) -> list[str]:
        return [self._hardware]

    def has_room(self) -> bool:
        return self._job is None

    def submit(self, job: Job) -> None:
        if self._job is not None:
            raise RuntimeError("the local executor measures one point at a time")
        self._job = job

    def finished(self, wait_s: float) -> list[Finished]:
        if self._job is None:
            return []
        job = self._job
        result = measure_job(job)
        self._job = None
        return [Finished(ident=job.ident, result=result, hardware=self._hardware)]

    def cancel(self, ident: int) -> None:
        if self._job is not None and self._job.ident == ident:
            self._job = None

    def busy(self) -> int:
        return int(self._job is not None)

    def close(self) -> None:
        self._job = None
