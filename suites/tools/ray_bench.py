"""Benchmark of ``--executor ray`` on this machine: ``python -m suites.tools.ray_bench``.

Two figures, from whole sweeps of one suite's grid (default: the quick memory grid, every
point on one thread), each into a fresh results file:

- overhead per point: what the harness adds to the points' own time (sweep wall - the sum
  of the rows' ``wall_s``, which run_point times around each child), through Ray on a
  one-CPU local cluster (so points still run one at a time) minus through the local
  executor, / points. The raw wall difference is printed too: it also holds any change
  in the points' own speed (Ray sets ``OMP_NUM_THREADS`` to a task's CPUs, for one);
- fan-out: wall through Ray with two one-CPU workers / wall with one; and the mean number
  of points in flight with two (sum of the rows' ``wall_s`` / sweep wall), which says the
  points did run side by side even where other load left them no second core.

Cluster start-up is not timed (it is paid once per sweep, and printed); the first Ray
sweep on a new cluster does include starting its workers. Each repeat runs local, one
worker, two workers in turn, so a change in the machine's load hits all three. Times on a
shared machine are only comparable with the load they were taken under, which is printed
(1-minute load average before and after each sweep) with the environment.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from suites.harness.environment import environment
from suites.harness.options import SweepOptions
from suites.harness.suite import GridContext
from suites.harness.sweep import run_sweep
from suites.registry import get_suite
from suites.rows.schema import MODES


def timed_sweep(suite_name: str, ctx: GridContext, executor: str) -> dict[str, Any]:
    """One sweep into a fresh results directory: wall seconds, points, statuses, load."""
    suite = get_suite(suite_name)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="ray-bench-") as out_dir:
        start = time.perf_counter()
        run_file = run_sweep(
            suite,
            ctx,
            SweepOptions(out_dir=Path(out_dir), threads=1, progress=False, executor=executor),
            log=io.StringIO(),
        )
        wall_s = time.perf_counter() - start
    statuses = sorted({row["status"] for row in run_file.rows})
    return {
        "executor": executor,
        "wall_s": wall_s,
        "points": len(run_file.rows),
        "points_s": sum(row["wall_s"] for row in run_file.rows),
        "statuses": statuses,
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
    }


def ray_sweep(suite_name: str, ctx: GridContext, num_cpus: int) -> dict[str, Any]:
    """A sweep through Ray on a fresh local cluster of ``num_cpus`` one-CPU slots."""
    import ray

    start = time.perf_counter()
    ray.init(
        num_cpus=num_cpus,
        include_dashboard=False,
        object_store_memory=100 * 2**20,
        configure_logging=False,
        log_to_driver=False,
    )
    started_s = time.perf_counter() - start
    try:
        result = timed_sweep(suite_name, ctx, "ray")
    finally:
        ray.shutdown()
    return result | {"workers": num_cpus, "cluster_start_s": started_s}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m suites.tools.ray_bench", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--suite", default="memory")
    parser.add_argument("--mode", default="quick", choices=MODES)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--out", type=Path, default=None, help="append the figures as one JSON line to this file"
    )
    args = parser.parse_args(argv)
    from suites.harness.executors.ray_executor import require_ray

    require_ray()
    ctx = GridContext(device="cpu", mode=args.mode)
    runs: list[dict[str, Any]] = []
    for repeat in range(args.repeats):
        for run in (
            lambda: timed_sweep(args.suite, ctx, "local") | {"workers": 1},
            lambda: ray_sweep(args.suite, ctx, 1),
            lambda: ray_sweep(args.suite, ctx, 2),
        ):
            runs.append(run() | {"repeat": repeat})
            print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    figures = summarize(runs)
    env = environment("cpu")
    report = {
        "suite": args.suite,
        "mode": args.mode,
        "figures": figures,
        "runs": runs,
        "env": {
            k: env[k] for k in ("host", "cpu_model", "n_cpus", "torch", "git_sha", "git_dirty")
        },
    }
    print(
        f"## --executor ray on {env['cpu_model']} ({env['n_cpus']} CPUs), "
        f"{args.suite} {args.mode} grid, {figures['points']} points, threads=1"
    )
    print(
        "| repeat | local s (points s) | ray 1 worker s (points s) | ray 2 workers s | "
        "overhead s/point | raw wall diff s/point | 2 vs 1 worker | in flight (2) | "
        "load (1 min) |\n|---|---|---|---|---|---|---|---|---|"
    )
    for row in figures["per_repeat"]:
        print(
            f"| {row['repeat']} | {row['local_s']:.1f} ({row['local_points_s']:.1f}) | "
            f"{row['ray1_s']:.1f} ({row['ray1_points_s']:.1f}) | {row['ray2_s']:.1f} | "
            f"{row['overhead_s_per_point']:.3f} | {row['raw_diff_s_per_point']:.3f} | "
            f"{row['fan_out_ratio']:.2f} | {row['in_flight']:.2f} | "
            f"{row['load_min']:.1f}-{row['load_max']:.1f} |"
        )
    print(
        f"median overhead per point: {figures['overhead_s_per_point']:.3f} s (target <= 1); "
        f"median 2-vs-1-worker wall ratio: {figures['fan_out_ratio']:.2f} (target <= 0.6)"
    )
    if args.out is not None:
        with open(args.out, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(report) + "\n")
    return 0


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per repeat and median: harness overhead per point (1 Ray worker vs local), the raw
    wall difference per point, and the 2/1-worker wall ratio."""
    per_repeat = []
    for repeat in sorted({run["repeat"] for run in runs}):
        mine = [run for run in runs if run["repeat"] == repeat]
        local = next(r for r in mine if r["executor"] == "local")
        ray1 = next(r for r in mine if r["executor"] == "ray" and r["workers"] == 1)
        ray2 = next(r for r in mine if r["executor"] == "ray" and r["workers"] == 2)
        loads = [r[k] for r in mine for k in ("load_before", "load_after")]
        harness = {
            name: run["wall_s"] - run["points_s"]
            for name, run in (("local", local), ("ray1", ray1))
        }
        per_repeat.append(
            {
                "repeat": repeat,
                "local_s": local["wall_s"],
                "ray1_s": ray1["wall_s"],
                "ray2_s": ray2["wall_s"],
                "local_points_s": local["points_s"],
                "ray1_points_s": ray1["points_s"],
                "overhead_s_per_point": (harness["ray1"] - harness["local"]) / local["points"],
                "raw_diff_s_per_point": (ray1["wall_s"] - local["wall_s"]) / local["points"],
                "fan_out_ratio": ray2["wall_s"] / ray1["wall_s"],
                "in_flight": ray2["points_s"] / ray2["wall_s"],
                "load_min": min(loads),
                "load_max": max(loads),
            }
        )
    return {
        "points": runs[0]["points"],
        "per_repeat": per_repeat,
        "overhead_s_per_point": statistics.median(r["overhead_s_per_point"] for r in per_repeat),
        "fan_out_ratio": statistics.median(r["fan_out_ratio"] for r in per_repeat),
    }


if __name__ == "__main__":
    sys.exit(main())
