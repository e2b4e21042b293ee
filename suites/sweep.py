"""The sweep loop: a suite's points in order of length, each measured in its own child.

Points run shortest first, so that after a point runs out of memory (or time) the longer
points of its family are written as ``skipped`` instead of being tried. Points whose key
already has an ``ok`` row in the run file are not measured again (resume). One row per
point is appended to the run's results file (suites.store) as soon as it is known.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from suites.busy import RULE, is_busy
from suites.env import environment, hardware_name
from suites.isolation import run_point
from suites.lock import sweep_lock
from suites.registry import GridContext, Point, Suite
from suites.rows import assemble_row
from suites.store import DEFAULT_OUT, RunFile

# Points that mean "longer will not fit either": later lengths of the family are skipped.
STOPPING_STATUSES = ("oom", "timeout")


def run_sweep(suite: Suite, ctx: GridContext, *, out_dir: Path = DEFAULT_OUT,
              fresh: bool = False, max_memory_gb: float | None = None,
              timeout_s: float | None = None, threads: int | None = None,
              progress: bool = True, log: Any = sys.stderr) -> RunFile:
    """Measure every point of ``suite`` not already ok in the run file; returns that file.

    ``threads`` sets torch's thread count in every point (it is part of the point, so
    results with different counts never resume each other); None keeps torch's default.
    Holds the folder's lock for the suite and device throughout (suites.lock): a second
    sweep of the same suite into the same folder raises SweepLocked instead of measuring
    every point twice.
    """
    with sweep_lock(out_dir, suite.name, ctx.device):
        return _sweep(suite, ctx, out_dir, fresh, max_memory_gb, timeout_s, threads,
                      progress, log)


def _sweep(suite: Suite, ctx: GridContext, out_dir: Path, fresh: bool,
           max_memory_gb: float | None, timeout_s: float | None, threads: int | None,
           progress: bool, log: Any) -> RunFile:
    points = sorted(suite.grid(ctx), key=lambda point: point.seq_len)  # stable
    if threads is not None:
        points = [point.with_threads(threads) for point in points]
    # The grid's mode and size go into every row, so a report can tell a complete run
    # (a row for every point) from an interrupted one.
    env = {**environment(ctx.device), "mode": ctx.mode, "grid_points": len(points)}
    _warn_if_busy(env, log)
    hardware = hardware_name(env, ctx.device)
    run_file = RunFile.open(out_dir, suite.name, ctx.device, fresh=fresh)
    run_file.planned = {point.key(suite.name, hardware) for point in points}
    for problem in run_file.problems:
        print(f"warning: {problem}", file=log)
    done = run_file.ok_keys()
    stopped: dict[str, tuple[str, int]] = {}  # family -> (status, seq_len) it stopped at
    from tqdm import tqdm

    bar = tqdm(total=len(points), desc=suite.name, unit="point", disable=not progress,
               file=log, dynamic_ncols=True)
    try:
        for point in points:
            key = point.key(suite.name, hardware)
            if key in done:
                bar.update(1)
                continue
            bar.set_postfix_str(_describe(point), refresh=True)

            def record(result: dict[str, Any], point: Point = point, key: str = key) -> None:
                run_file.append(assemble_row(suite.name, run_file.run_id, env, point, key,
                                             result, max_memory_gb, timeout_s))

            try:
                result = measure_or_skip(point, stopped.get(point.family()), max_memory_gb,
                                         timeout_s)
            except KeyboardInterrupt:
                record({"status": "error", "error": "interrupted (KeyboardInterrupt)"})
                raise
            if result["status"] in STOPPING_STATUSES:
                stopped.setdefault(point.family(), (result["status"], point.seq_len))
            record(result)
            bar.update(1)
    finally:
        bar.close()
    return run_file


def _warn_if_busy(env: dict[str, Any], log: Any) -> None:
    """Times on an oversubscribed CPU are not comparable (each thread barrier waits for a
    time slice); the load is recorded per row, and said up front."""
    if not hasattr(os, "getloadavg"):
        return
    load = os.getloadavg()[0]
    if is_busy(load, env.get("n_cpus")):
        print(f"warning: load average {load:.1f} on {env['n_cpus']} CPUs ({RULE}): this "
              "machine is busy, so times will be slow and noisy and are marked as measured "
              "under load (memory figures are unaffected); "
              "--threads 1 or OMP_WAIT_POLICY=PASSIVE stop OpenMP threads spinning "
              "against the other load", file=log)


def measure_or_skip(point: Point, stopped: tuple[str, int] | None,
                    max_memory_gb: float | None, timeout_s: float | None) -> dict[str, Any]:
    """A skipped result without starting a child, when the point or its family says so;
    else the point measured in its child (suites.isolation)."""
    if point.options.get("skip_reason"):
        return {"status": "skipped", "error": point.options["skip_reason"], "wall_s": 0.0}
    if stopped is not None and stopped[1] < point.seq_len:
        return {"status": "skipped", "wall_s": 0.0,
                "error": f"a shorter length of this family ended in {stopped[0]} "
                         f"(seq_len={stopped[1]})"}
    return run_point(point.runner, point.params, point.runner_options(),
                     timeout_s=timeout_s or point.timeout_s, max_memory_gb=max_memory_gb)


def _describe(point: Point) -> str:
    params = point.params
    return f"{params.get('model')} {params.get('pass')} L={params.get('seq_len')}"
