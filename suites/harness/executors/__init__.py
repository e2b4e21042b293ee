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

from typing import Any

from suites.harness.executors.jobs import Executor

EXECUTORS = ("local", "ray")


def open_executor(
    name: str,
    *,
    device: str,
    hardware: str,
    address: str | None = None,
    log: Any = None,
    jobs: int = 1,
) -> Executor:
    """``local``: this process, one point at a time (``jobs`` > 1: that many side by side,
    suites.harness.executors.side_by_side), on ``hardware`` (the driver's).
    ``ray``: warm Ray workers (one actor per slot) on the cluster at ``address`` (None:
    the one this process is connected to, else a new local one)."""
    if name == "local" and jobs > 1:
        from suites.harness.executors.side_by_side import SideBySideExecutor

        return SideBySideExecutor(hardware, jobs)
    if name == "local":
        from suites.harness.executors.local import LocalExecutor

        return LocalExecutor(hardware)
    if name == "ray":
        from suites.harness.executors.ray_executor import RayExecutor

        return RayExecutor(device=device, address=address, log=log)
    raise ValueError(f"executor={name!r} is unknown; allowed: {EXECUTORS}")
