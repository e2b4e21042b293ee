"""The sweep: a suite's points, each measured in its own child, through an executor.

The order and the skip-after-oom rule are suites.harness.executors.dispatch's: each family's
lengths run shortest first, so that after a point runs out of memory (or time) the longer
points of its family are written as ``skipped`` instead of being tried. Points whose key
already has an ``ok`` row in the run file are not measured again (resume). The executor is
``local`` (one point at a time, here) or ``ray`` (warm Ray workers over a cluster);
either way only this process appends to the run's results file (suites.rows.store), one row per
point, as soon as it is known.
"""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import replace
from typing import Any

from suites.harness.assembly import assemble_row
from suites.harness.efficiency import efficiency_fields, run_peaks
from suites.harness.environment import environment, usable_cpus
from suites.harness.executors import open_executor
from suites.harness.executors.dispatch import measure_points
from suites.harness.isolation import default_max_memory_gb
from suites.harness.lengths import select_lengths, select_trained
from suites.harness.lock import sweep_lock
from suites.harness.options import SweepOptions
from suites.harness.points import DEFAULT_RUNNER, Point
from suites.harness.process_settings import SETTINGS_FIELDS
from suites.harness.suite import GridContext, Suite
from suites.rows.busy import RULE, is_busy
from suites.rows.names import hardware_name, schema_1_mode
from suites.rows.store import RunFile

DEFAULT_OPTIONS = SweepOptions()


def run_sweep(
    suite: Suite,
    ctx: GridContext,
    options: SweepOptions = DEFAULT_OPTIONS,
    *,
    log: Any = sys.stderr,
) -> RunFile:
    """Measure every point of ``suite`` not already ok in the run file; returns that file.

    ``options`` (suites.harness.options) says how: ``threads`` sets torch's thread count in
    every point (it is part of the point, so results with different counts never resume
    each other); ``executor`` "ray" measures each point as a Ray task on the cluster at
    ``ray_address`` (suites.harness.executors); ``lengths`` keeps only the grid's points of
    those lengths and ``train`` those of models trained with those attentions
    (suites.harness.lengths); ``argv`` is the command line every row records.
    Holds the folder's lock for the suite and device throughout (suites.harness.lock): a
    second sweep of the same suite into the same folder raises SweepLocked instead of
    measuring every point twice.
    """
    with sweep_lock(options.out_dir, suite.name, ctx.device):
        return _sweep(suite, ctx, options, log)


def _sweep(suite: Suite, ctx: GridContext, options: SweepOptions, log: Any) -> RunFile:
    if options.jobs > 1 and not suite.side_by_side:
        raise ValueError(
            f"jobs={options.jobs}: the {suite.name} suite's points must run one at a time "
            "(its figures are times, which points sharing the cores would inflate)"
        )
    threads = side_by_side_threads(options.threads, options.jobs, ctx.device)
    max_memory_gb = memory_cap(suite, ctx, options.max_memory_gb, options.jobs)
    argv = list(sys.argv if options.argv is None else options.argv)
    grid = suite.grid(ctx)
    if threads is not None:
        grid = [point.with_threads(threads) for point in grid]
    if not options.progress:
        # Runners that draw bars of their own (the quality suite's training) keep quiet too.
        grid = [replace(point, options={**point.options, "progress": False}) for point in grid]
    selected = select_trained(select_lengths(grid, options.lengths), options.train)
    points = sorted(selected, key=lambda point: point.seq_len)  # stable
    env = environment(ctx.device)
    hardware = hardware_name(env, ctx.device)
    # The grid's mode and size go into every row, so a report can tell a complete run
    # (a row for every point) from an interrupted one; its identity keeps one grid per
    # run file (suites.rows.store); oversubscribed threads make its times meaningless.
    env |= {
        "mode": ctx.mode,
        "grid_points": len(points),
        "grid_id": grid_id(suite.name, ctx.mode, grid),
        "threads_oversubscribed": _oversubscribed(
            None if threads is None else threads * options.jobs, env.get("n_cpus"), log
        ),
        # Points measured at once (--jobs): their step times share the cores.
        "jobs": options.jobs,
        # The command that made the rows: a report quotes it rather than rebuilding one.
        "argv": argv,
    }
    _warn_if_busy(env, log)
    run_file = RunFile.open(
        options.out_dir,
        suite.name,
        ctx.device,
        fresh=options.fresh,
        # Times and peaks depend on the process settings and the CPU too: other settings or
        # another machine kind (a results folder shared through git), another file.
        grid={
            "mode": ctx.mode,
            "grid_id": env["grid_id"],
            "cpu_model": env.get("cpu_model"),
            **{name: env.get(name) for name in SETTINGS_FIELDS},
        },
    )
    run_file.planned = {point.key(suite.name, hardware) for point in points}
    for problem in run_file.problems:
        print(f"warning: {problem}", file=log)
    done = run_file.ok_keys()
    # The peaks MFU divides by (suites.harness.efficiency), had once per run for the dtypes of the
    # model points still to measure.
    dtypes = {
        str(point.params.get("dtype"))
        for point in points
        if point.runner == DEFAULT_RUNNER and point.key(suite.name, hardware) not in done
    }
    peaks = (
        run_peaks(
            ctx.device, _text(env.get("gpu_name")), dtypes, threads, quick=ctx.mode == "quick"
        )
        if dtypes
        else {}
    )

    def record(point: Point, key: str, result: dict[str, Any]) -> None:
        if point.runner == DEFAULT_RUNNER:
            result = (
                efficiency_fields(
                    result.get("tflops_per_s"), peaks.get(str(point.params.get("dtype")))
                )
                | result
            )
        run_file.append(
            assemble_row(
                suite.name,
                run_file.run_id,
                env,
                point,
                key,
                result,
                max_memory_gb,
                options.timeout_s,
            )
        )

    pool = open_executor(
        options.executor,
        device=ctx.device,
        hardware=hardware,
        address=options.ray_address,
        log=log,
        jobs=options.jobs,
    )
    try:
        measure_points(
            points,
            pool,
            suite=suite.name,
            done=done,
            record=record,
            max_memory_gb=max_memory_gb,
            timeout_s=options.timeout_s,
            per_hardware=options.per_hardware,
            progress=options.progress,
            log=log,
        )
    finally:
        pool.close()
    return run_file


def side_by_side_threads(threads: int | None, jobs: int, device: str) -> int | None:
    """Torch threads per point: ``threads`` when given; with ``jobs`` points side by side
    on a CPU, the cores this process may use shared out (at least 1 each); else None
    (torch's default)."""
    if threads is not None or jobs == 1 or device != "cpu":
        return threads
    return max(1, usable_cpus() // jobs)


def memory_cap(
    suite: Suite, ctx: GridContext, requested: float | None, jobs: int = 1
) -> float | None:
    """The per-point cap (GiB): --max-memory-gb, else the suite's own, else the harness
    default for the device (suites.harness.isolation); a default is shared out among
    ``jobs`` points side by side."""
    if requested is not None:
        return requested
    cap = None
    if suite.default_max_memory_gb is not None:
        cap = suite.default_max_memory_gb(ctx)
    if cap is None:
        cap = default_max_memory_gb(ctx.device)
    return cap if cap is None or jobs == 1 else round(cap / jobs, 1)


def grid_id(suite: str, mode: str, grid: list[Point]) -> str:
    """A short hash of the whole grid (every point's key, before --lengths picks some):
    two sweeps resume one run file only when they measure the same grid. The keys are
    taken without the hardware, which names the machine, not the grid; the mode is
    spelled as schema 1 spelled it, as the keys are, so older files are resumed."""
    keys = sorted(point.key(suite, "") for point in grid)
    spelled = schema_1_mode(mode)
    return hashlib.sha1("\n".join([suite, spelled, *keys]).encode()).hexdigest()[:12]


def _oversubscribed(threads: int | None, n_cpus: Any, log: Any) -> bool | None:
    """True when --threads asks for more threads than this process may run on; said up
    front, since each thread barrier then waits for a time slice. None without --threads."""
    if threads is None or not isinstance(n_cpus, int):
        return None
    if threads <= n_cpus:
        return False
    print(
        f"warning: --threads {threads} on {n_cpus} CPUs: threads will wait for each other's "
        "time slices, so times measure the oversubscription, not the model (memory figures "
        f"are unaffected); rows record threads_oversubscribed; use --threads {n_cpus} or fewer",
        file=log,
    )
    return True


def _warn_if_busy(env: dict[str, Any], log: Any) -> None:
    """Times on an oversubscribed CPU are not comparable (each thread barrier waits for a
    time slice); the load is recorded per row, and said up front."""
    if not hasattr(os, "getloadavg"):
        return
    load = os.getloadavg()[0]
    if is_busy(load, env.get("n_cpus")):
        print(
            f"warning: load average {load:.1f} on {env['n_cpus']} CPUs ({RULE}): this "
            "machine is busy, so times will be slow and noisy and are marked as measured "
            "under load (memory figures are unaffected); "
            "--threads 1 or --wait-policy passive (auto picks it when the machine is busy "
            "as a run starts) stop OpenMP threads "
            "spinning against the other load",
            file=log,
        )


def _text(value: object) -> str | None:
    """An environment field as text (None stays None)."""
    return None if value is None else str(value)
