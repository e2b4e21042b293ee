"""CLI: ``python -m suites.run SUITE [--device auto|cpu|cuda] [--quick|--full] [--out DIR] ...``.

Runs a suite's grid point by point, each in its own child process (suites.measure), and
appends one row per point to the run's results file (suites.store). Points are run in
order of length, so that after a point runs out of memory (or time) the longer points of
its family are written as ``skipped`` instead of being tried. Ends with a summary table.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from suites.env import environment, hardware_name
from suites.lengths import lengths_argument, select_lengths
from suites.measure import cap_mechanism, run_point
from suites.progress import heartbeat
from suites.registry import GridContext, Point, Suite, get_suite, load_suites
from suites.store import EXTRA_FIELDS, ROW_FIELDS, SCHEMA_VERSION, RunFile, utc_now

DEFAULT_OUT = Path("results")
# Points that mean "longer will not fit either": later lengths of the family are skipped.
STOPPING_STATUSES = ("oom", "timeout")
SUMMARY_COLUMNS = ("model", "impl", "pass", "seq_len", "batch", "n_layers", "reversible",
                   "ff_chunks", "autocast", "n_hashes", "bucket_size", "status", "t_median_ms",
                   "peak_mb", "saved_mb", "tokens_per_s", "tflops_per_s")
ALWAYS_SHOWN = ("model", "seq_len", "status", "t_median_ms", "peak_mb")


def default_max_memory_gb(device: str) -> float | None:
    """Per-child cap when neither the suite nor --max-memory-gb sets one.

    CPU: 16 GiB or 70% of the memory available now, whichever is smaller, so one point
    cannot take the machine (or its other users) down. CUDA: no cap beyond the device.
    """
    if device == "cuda":
        return None
    import psutil

    return round(min(16.0, 0.7 * psutil.virtual_memory().available / 2**30), 1)


def run_sweep(suite: Suite, ctx: GridContext, *, out_dir: Path = DEFAULT_OUT,
              fresh: bool = False, max_memory_gb: float | None = None,
              timeout_s: float | None = None, threads: int | None = None,
              progress: bool = True, log: Any = sys.stderr,
              lengths: list[int] | None = None) -> RunFile:
    """Measure every point of ``suite`` not already ok in the run file; returns that file.

    ``threads`` sets torch's thread count in every point (it is part of the point, so
    results with different counts never resume each other); None keeps torch's default.
    ``lengths`` keeps only the grid's points of those lengths.
    """
    points = sorted(select_lengths(suite.grid(ctx), lengths),
                    key=lambda point: point.seq_len)  # stable
    if threads is not None:
        for point in points:
            point.params["num_threads"] = threads
    env = environment(ctx.device)
    _warn_if_busy(env, log)
    hardware = hardware_name(env, ctx.device)
    run_file = RunFile.open(out_dir, suite.name, ctx.device, fresh=fresh)
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
            try:
                with heartbeat(bar, _describe(point), point.options):
                    result = _measure(point, stopped.get(point.family()), max_memory_gb,
                                      timeout_s)
            except KeyboardInterrupt:
                result = {"status": "error", "error": "interrupted (KeyboardInterrupt)"}
                run_file.append(_row(suite.name, run_file.run_id, env, point, key, result,
                                     max_memory_gb, timeout_s))
                raise
            if result["status"] in STOPPING_STATUSES:
                stopped.setdefault(point.family(), (result["status"], point.seq_len))
            run_file.append(_row(suite.name, run_file.run_id, env, point, key, result,
                                 max_memory_gb, timeout_s))
            bar.update(1)
    finally:
        bar.close()
    return run_file


def _warn_if_busy(env: dict[str, Any], log: Any) -> None:
    """Times on an oversubscribed CPU are not comparable (each thread barrier waits for a
    time slice); the load is recorded per row, and said up front."""
    if not hasattr(os, "getloadavg") or not env.get("n_cpus"):
        return
    load = os.getloadavg()[0]
    if load > env["n_cpus"]:
        print(f"warning: load average {load:.1f} on {env['n_cpus']} CPUs: this machine is "
              "busy, so times will be slow and noisy (memory figures are unaffected); "
              "--threads 1 or OMP_WAIT_POLICY=PASSIVE stop OpenMP threads spinning "
              "against the other load", file=log)


def _measure(point: Point, stopped: tuple[str, int] | None, max_memory_gb: float | None,
             timeout_s: float | None) -> dict[str, Any]:
    if point.options.get("skip_reason"):
        return {"status": "skipped", "error": point.options["skip_reason"], "wall_s": 0.0}
    if stopped is not None and stopped[1] < point.seq_len:
        return {"status": "skipped", "wall_s": 0.0,
                "error": f"a shorter length of this family ended in {stopped[0]} "
                         f"(seq_len={stopped[1]})"}
    options = {"min_run_time": point.min_run_time, **point.options}
    return run_point(point.runner, point.params, options,
                     timeout_s=timeout_s or point.timeout_s, max_memory_gb=max_memory_gb)


def _row(suite: str, run_id: str, env: dict[str, Any], point: Point, key: str,
         result: dict[str, Any], max_memory_gb: float | None,
         timeout_s: float | None) -> dict[str, Any]:
    """Every schema field (null where not measured), then the point's and runner's own."""
    row: dict[str, Any] = dict.fromkeys(ROW_FIELDS + EXTRA_FIELDS)
    row |= {"schema_version": SCHEMA_VERSION, "run_id": run_id, "timestamp_utc": utc_now(),
            "suite": suite, **env, **point.params, "point_key": key,
            "max_memory_gb": max_memory_gb, "timeout_s": timeout_s or point.timeout_s,
            "memory_cap": cap_mechanism(point.params.get("device"), max_memory_gb),
            "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}
    return row | result


def _describe(point: Point) -> str:
    params = point.params
    parts = [str(params.get("model")), str(params.get("pass")), f"L={params.get('seq_len')}"]
    return " ".join(parts)


def latest_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The last row of each point key, in first-seen order (a re-measured point's newest)."""
    by_key: dict[Any, dict[str, Any]] = {}
    for row in rows:
        by_key[row.get("point_key", id(row))] = row
    return list(by_key.values())


def summary(suite: Suite, ctx: GridContext, run_file: RunFile,
            max_memory_gb: float | None) -> str:
    """Markdown: where the rows are, status counts, the table, the suite's own lines."""
    import pandas as pd

    rows = latest_rows(run_file.rows)
    counts = Counter(row.get("status") for row in rows)
    cap = ("none" if max_memory_gb is None else f"{max_memory_gb:g} GiB per point "
           f"({'CUDA memory fraction' if ctx.device == 'cuda' else 'RLIMIT_AS above start-up'})")
    lines = [f"## {suite.name} ({ctx.device}, {ctx.mode})", "",
             f"results: {run_file.path}", f"memory budget: {cap}",
             "points: " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items())), ""]
    if rows:
        frame = pd.DataFrame(rows)
        columns = [c for c in SUMMARY_COLUMNS if c in frame and (
            c in ALWAYS_SHOWN or frame[c].nunique(dropna=True) > 1)]
        lines.append(frame[columns].to_markdown(index=False, floatfmt=".4g"))
    if suite.summarize is not None:
        lines += ["", *suite.summarize(rows, ctx)]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m suites.run", description="Run a benchmark suite; see DESIGN.md.")
    parser.add_argument("suite", nargs="?", help="suite name, or 'all' (see --list)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_const", const="quick", dest="mode",
                      help="seconds-long smoke grid")
    size.add_argument("--full", action="store_const", const="full", dest="mode",
                      help="paper-scale grid")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results directory")
    parser.add_argument("--max-memory-gb", type=float, default=None,
                        help="memory cap per point (default: the suite's, else min(16, "
                             "70%% of available RAM) on CPU, none on CUDA)")
    parser.add_argument("--memory-budget-gb", type=float, default=16.0,
                        help="scale suite: the budget a training step must fit in")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds per point (default: the grid's)")
    parser.add_argument("--data", default=None, metavar="PATH",
                        help="quality suite: a file or folder to train the byte LM on "
                             "(default: the running Python's standard library sources)")
    parser.add_argument("--lengths", type=lengths_argument, default=None,
                        metavar="N[,N...]",
                        help="run only the grid's points of these sequence lengths "
                             "(1048576, 2^20 or 1M)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads per point (default: torch's, i.e. all cores)")
    parser.add_argument("--fresh", action="store_true",
                        help="start a new results file instead of resuming the newest")
    parser.add_argument("--list", action="store_true", help="list suites, or a suite's points")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def resolve_device(requested: str) -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device cuda: CUDA is not available here (torch {torch.__version__}"
                         f", built with CUDA {torch.version.cuda}); use --device cpu or auto")
    return requested


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        device = resolve_device(args.device)
        ctx = GridContext(device=device, mode=args.mode or "default",
                          memory_budget_gb=args.memory_budget_gb, out_dir=args.out,
                          data=args.data)
        available = load_suites()
        if args.suite is None:
            if not args.list:
                parser.error(f"name a suite; allowed: {sorted(available)} or 'all'")
            return _list_suites(available, ctx)
        names = [n for n, s in available.items() if s.in_all] if args.suite == "all" else [
            get_suite(args.suite).name]
        _check_data(args.data, names)
        for name in names:
            select_lengths(available[name].grid(ctx), args.lengths)
    except (ValueError, FileNotFoundError) as exc:
        parser.error(str(exc))
    if args.list:
        for name in names:
            _list_points(available[name], ctx)
        return 0
    for name in names:
        suite = available[name]
        cap = args.max_memory_gb
        if cap is None and suite.default_max_memory_gb is not None:
            cap = suite.default_max_memory_gb(ctx)
        if cap is None:
            cap = default_max_memory_gb(device)
        try:
            run_file = run_sweep(suite, ctx, out_dir=args.out, fresh=args.fresh,
                                 max_memory_gb=cap, timeout_s=args.timeout,
                                 threads=args.threads, progress=not args.no_progress,
                                 lengths=args.lengths)
        except KeyboardInterrupt:
            print(f"\ninterrupted: rows so far are in {args.out}/; run the same command "
                  "again to resume", file=sys.stderr)
            return 130
        print(summary(suite, ctx, run_file, cap), flush=True)
    return 0


def _check_data(data: str | None, names: list[str]) -> None:
    """--data is the quality suite's; a bad path fails here, before any point runs (the
    files are listed, not read: each point's child reads them)."""
    if data is None:
        return
    if names != ["quality"]:
        raise ValueError(f"--data applies only to the quality suite; got suite(s) {names}")
    from suites.quality.corpus import corpus_files

    corpus_files(data)


def _list_suites(available: dict[str, Suite], ctx: GridContext) -> int:
    for name, suite in available.items():
        print(f"{name:<11} {len(suite.grid(ctx)):>4} points ({ctx.mode}, {ctx.device})  "
              f"{suite.description}")
    return 0


def _list_points(suite: Suite, ctx: GridContext) -> None:
    import pandas as pd

    points = suite.grid(ctx)
    print(f"## {suite.name}: {len(points)} points ({ctx.mode}, {ctx.device})")
    print(pd.DataFrame([p.params for p in points]).to_markdown(index=False))


if __name__ == "__main__":
    sys.exit(main())
