"""CLI: ``python -m suites.run SUITE [--device auto|cpu|cuda] [--quick|--paper] [--out DIR] ...``.

Runs a suite's grid point by point, each in its own child process (suites.harness.sweep,
suites.harness.isolation), appending one row per point to the run's results file
(suites.rows.store), and ends with a short summary (suites.harness.summary); the exit status
says whether any point ended in error (suites.harness.exits). ``--executor ray`` spreads the
points over a Ray cluster (suites.harness.executors). A plain run writes under ``runs/``
(ignored by git) and resumes only its own files there; ``--out results`` appends to the
committed record.
The one argument parser is :func:`build_parser`; a new flag is added there, with a value
check from suites.harness.arguments as its ``type``, and read in :func:`main`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

from suites.harness import exits, process_settings
from suites.harness.arguments import (
    MAX_MMAP_THRESHOLD,
    MAX_SEEDS,
    MAX_THREADS,
    MAX_TIMEOUT_S,
    at_most,
    non_negative_int,
    output_folder,
    positive_float,
    positive_int,
)
from suites.harness.executors import EXECUTORS
from suites.harness.lengths import lengths_argument, select_lengths, select_trained
from suites.harness.lock import SweepLocked
from suites.harness.options import SweepOptions
from suites.harness.process_memory import MEMORY_BUDGET_GIB
from suites.harness.suite import GridContext, Suite
from suites.harness.summary import summary, sweep_rows
from suites.harness.sweep import memory_cap, run_sweep
from suites.registry import get_suite, load_suites
from suites.rows.store import COMMITTED_OUT, DEFAULT_OUT, RowNotWritten


class DeprecatedFull(argparse.Action):
    """``--full``: the old name of ``--paper``; says so on stderr and selects "paper"."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        print("warning: --full is deprecated; use --paper (the paper-scale grid)", file=sys.stderr)
        setattr(namespace, self.dest, "paper")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m suites.run",
        description="Run a benchmark suite; see docs/suites.md and docs/results.md for the rows.",
    )
    parser.add_argument("suite", nargs="?", help="suite name, or 'all' (see --list)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--quick", action="store_const", const="quick", dest="mode", help="seconds-long smoke grid"
    )
    size.add_argument(
        "--paper", action="store_const", const="paper", dest="mode", help="paper-scale grid"
    )
    # The paper-scale grid's old flag, named like the attention "full": still accepted.
    size.add_argument("--full", action=DeprecatedFull, nargs=0, dest="mode", help=argparse.SUPPRESS)
    parser.add_argument(
        "--out",
        type=output_folder,
        default=DEFAULT_OUT,
        help=f"results folder (default: {DEFAULT_OUT}/, ignored by git; "
        f"'--out {COMMITTED_OUT}' appends to the committed record)",
    )
    parser.add_argument(
        "--max-memory-gb",
        type=positive_float,
        default=None,
        help="memory cap per point, > 0 (default: the suite's, else min(16, "
        "70%% of available RAM) on CPU, none on CUDA)",
    )
    parser.add_argument(
        "--memory-budget-gb",
        type=positive_float,
        default=MEMORY_BUDGET_GIB,
        help="scale suite: the budget a training step must fit in, > 0",
    )
    parser.add_argument(
        "--timeout",
        type=at_most(positive_float, MAX_TIMEOUT_S, "a week"),
        default=None,
        help="seconds per point, > 0 (default: the grid's)",
    )
    parser.add_argument(
        "--data",
        default=None,
        metavar="PATH",
        help="quality suite: a file or folder to train the byte LM on "
        "(default: the running Python's standard library sources)",
    )
    parser.add_argument(
        "--lengths",
        type=lengths_argument,
        default=None,
        metavar="N[,N...]",
        help="run only the grid's points of these sequence lengths (1048576, 2^20 or 1M)",
    )
    parser.add_argument(
        "--train",
        type=lambda text: tuple(part for part in text.split(",") if part),
        default=None,
        metavar="ATTN[,ATTN...]",
        help="quality suite: run only the points of the models trained with these "
        "attentions (shared-full, lsh-N, local, sdpa)",
    )
    parser.add_argument(
        "--threads",
        type=at_most(positive_int, MAX_THREADS, "more than any machine runs"),
        default=None,
        help="torch threads per point, >= 1 (default: torch's, i.e. all "
        "cores; --quick grids use 1)",
    )
    parser.add_argument(
        "--jobs",
        type=at_most(positive_int, MAX_THREADS, "more than any machine runs"),
        default=1,
        help="points measured side by side, >= 1 (default: 1); only for suites whose "
        "figures are not times (quality); on a CPU each point then gets cores/jobs threads "
        "unless --threads says otherwise",
    )
    parser.add_argument(
        "--wait-policy",
        default=process_settings.DEFAULT_WAIT_POLICY,
        choices=process_settings.WAIT_POLICIES,
        help="OpenMP threads at a barrier in every point: auto (the default: inherit on an "
        "idle machine, passive on a busy one), passive (sleep; robust when other work "
        "shares the cores, slower on an idle machine), active (spin), inherit (this shell's "
        "OMP_WAIT_POLICY); rows record it",
    )
    parser.add_argument(
        "--mmap-threshold",
        type=at_most(non_negative_int, MAX_MMAP_THRESHOLD, "glibc's largest"),
        default=process_settings.DEFAULT_MMAP_THRESHOLD,
        metavar="BYTES",
        help="glibc's mmap threshold in every point, >= 0 (default: "
        f"{process_settings.DEFAULT_MMAP_THRESHOLD}, so freed large blocks go back to the OS and "
        "peaks are the tensors'; 0: glibc's sliding default); rows record it",
    )
    parser.add_argument(
        "--seeds",
        type=at_most(positive_int, MAX_SEEDS, "every seed trains each model again"),
        default=1,
        help="quality suite: train every model with seeds 0..N-1, >= 1 (default: 1)",
    )
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="start a new results file instead of resuming the newest",
    )
    parser.add_argument("--list", action="store_true", help="list suites, or a suite's points")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--executor",
        default="local",
        choices=EXECUTORS,
        help="local: one point at a time here; ray: warm Ray workers, one per slot, "
        "over a cluster's GPUs and nodes (the [ray] extra)",
    )
    parser.add_argument(
        "--ray-address",
        default=None,
        metavar="auto|HOST:PORT",
        help="--executor ray: the cluster to join (default: start one here)",
    )
    parser.add_argument(
        "--per-hardware",
        action="store_true",
        help="--executor ray: measure each point once per hardware kind "
        "(GPU or CPU model) in the cluster, not once on any node",
    )
    return parser


def resolve_device(requested: str) -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"--device cuda: CUDA is not available here (torch {torch.__version__}"
            f", built with CUDA {torch.version.cuda}); use --device cpu or auto"
        )
    return requested


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command = ["python", "-m", "suites.run", *(sys.argv[1:] if argv is None else argv)]
    try:
        device = resolve_device(args.device)
        ctx = GridContext(
            device=device,
            mode=args.mode or "default",
            memory_budget_gb=args.memory_budget_gb,
            out_dir=args.out,
            data=args.data,
            seeds=args.seeds,
        )
        available = load_suites()
        if args.suite is None:
            if not args.list:
                parser.error(f"name a suite; allowed: {sorted(available)} or 'all'")
            return _list_suites(available, ctx)
        names = (
            [n for n, s in available.items() if s.in_all]
            if args.suite == "all"
            else [get_suite(args.suite).name]
        )
        _check_data(args.data, names, ctx.mode, ctx.device)
        if args.seeds != 1 and names != ["quality"]:
            raise ValueError(f"--seeds applies only to the quality suite; got suite(s) {names}")
        _check_executor(args)
        options = options_from_args(args, command)
        if args.jobs > 1:
            _check_side_by_side(args.jobs, [available[name] for name in names], available)
        if args.train is not None and names != ["quality"]:
            raise ValueError(f"--train applies only to the quality suite; got suite(s) {names}")
        for name in names:
            select_trained(select_lengths(available[name].grid(ctx), args.lengths), args.train)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        parser.error(str(exc))
    if args.list:
        for name in names:
            _list_points(available[name], ctx)
        return exits.OK
    try:
        return _sweep_suites(args, [available[name] for name in names], ctx, options)
    except BrokenPipeError:
        # `suites.run ... | head`: the reader left, so the sweep stopped with points
        # unmeasured. Not a success; the rows so far are kept and a rerun resumes.
        _silence_output()
        return exits.PIPE_CLOSED


def _sweep_suites(
    args: argparse.Namespace, suites: list[Suite], ctx: GridContext, options: SweepOptions
) -> int:
    """Measure each suite in turn; the exit status of all their points together."""
    # Before the first point's process (and the fork server it comes from) starts.
    load = process_settings.current_load() if args.wait_policy == "auto" else None
    policy = process_settings.resolve_wait_policy(args.wait_policy, load=load)
    if args.wait_policy == "auto" and policy == "passive":
        print(
            f"note: other processes keep {load:.1f} cores busy: the machine is busy, so "
            "points run with OMP_WAIT_POLICY=PASSIVE (--wait-policy inherit keeps OpenMP's "
            "default)",
            flush=True,
        )
    process_settings.apply(policy, args.mmap_threshold)
    if ctx.device == "cpu":
        # Build the fused CPU kernel here, once, or find and say once why it cannot run:
        # each point's process then finds the built library (or the remembered failure)
        # and inherits the note that the warning was given.
        from reformer.lsh.dispatch import probe_cpu_kernel

        probe_cpu_kernel()
    statuses: list[str | None] = []
    for suite in suites:
        try:
            with exits.sigterm_as_interrupt():
                run_file = run_sweep(suite, ctx, options)
        except KeyboardInterrupt as exc:
            terminated = isinstance(exc, exits.Terminated)
            print(
                f"\n{'terminated (SIGTERM)' if terminated else 'interrupted'}: rows so far are "
                f"in {args.out}/ (the point that was running is measured again); run the same "
                "command again to resume",
                file=sys.stderr,
            )
            return exits.TERMINATED if terminated else exits.INTERRUPTED
        except SweepLocked as exc:
            print(f"error: {exc}", file=sys.stderr)
            return exits.NOT_RECORDED
        except RowNotWritten as exc:
            print(f"error: {exc}", file=sys.stderr)
            return exits.NOT_RECORDED
        cap = memory_cap(suite, ctx, options.max_memory_gb, options.jobs)
        print(summary(suite, ctx, run_file, cap), flush=True)
        statuses += [row.get("status") for row in sweep_rows(run_file)]
    return exits.sweep_status(statuses)


def _check_data(data: str | None, names: list[str], mode: str, device: str) -> None:
    """--data is the quality suite's; a bad path, or data too small to give the byte LM one
    window of its length on each side of the split, fails here, before any point runs (the
    files are listed and their sizes read, not their bytes: each point's child reads them)."""
    if data is None:
        return
    if names != ["quality"]:
        raise ValueError(f"--data applies only to the quality suite; got suite(s) {names}")
    from suites.quality.corpus import check_split_room
    from suites.quality.sizes import mode_size

    lm = mode_size(mode, device).bytes
    if lm is None:
        raise ValueError(
            f"--data is the byte LM's, and the quality suite's {mode!r} grid on {device} "
            "trains none (the duplication task alone); leave --data out"
        )
    check_split_room(data, lm.seq_len)


def options_from_args(args: argparse.Namespace, command: list[str]) -> SweepOptions:
    """The one options object of this run (suites.harness.options), built once here."""
    return SweepOptions(
        out_dir=args.out,
        fresh=args.fresh,
        max_memory_gb=args.max_memory_gb,
        timeout_s=args.timeout,
        threads=args.threads,
        progress=not args.no_progress,
        executor=args.executor,
        jobs=args.jobs,
        ray_address=args.ray_address,
        per_hardware=args.per_hardware,
        lengths=None if args.lengths is None else tuple(args.lengths),
        train=args.train,
        argv=tuple(command),
    )


def _check_side_by_side(jobs: int, suites: list[Suite], available: dict[str, Suite]) -> None:
    """--jobs N > 1 only for suites whose figures are not times, and only here (local)."""
    refused = [suite.name for suite in suites if not suite.side_by_side]
    if refused:
        allowed = sorted(name for name, suite in available.items() if suite.side_by_side)
        raise ValueError(
            f"--jobs {jobs}: suite(s) {refused} time their points, which must run one at a "
            f"time (points sharing the cores inflate each other's times); --jobs applies to "
            f"{allowed}"
        )


def _check_executor(args: argparse.Namespace) -> None:
    """Ray's options need --executor ray, and that needs Ray installed (said by flag name,
    before SweepOptions would say it by field name)."""
    if args.executor != "ray":
        for flag, value in (
            ("--ray-address", args.ray_address),
            ("--per-hardware", args.per_hardware),
        ):
            if value:
                raise ValueError(f"{flag} applies only to --executor ray")
        return
    if args.jobs > 1:
        raise ValueError(
            f"--jobs {args.jobs} applies only to --executor local (Ray runs a point per slot)"
        )
    from suites.harness.executors.ray_executor import require_ray

    require_ray()


def _list_suites(available: dict[str, Suite], ctx: GridContext) -> int:
    for name, suite in available.items():
        print(
            f"{name:<11} {len(suite.grid(ctx)):>4} points ({ctx.mode}, {ctx.device})  "
            f"{suite.description}"
        )
    return 0


def _list_points(suite: Suite, ctx: GridContext) -> None:
    import pandas as pd

    points = suite.grid(ctx)
    print(f"## {suite.name}: {len(points)} points ({ctx.mode}, {ctx.device})")
    print(pd.DataFrame([p.params for p in points]).to_markdown(index=False))


def _silence_output() -> None:
    """Send what is left of stdout and stderr nowhere, so the interpreter's last flush
    cannot raise BrokenPipeError again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            os.dup2(devnull, stream.fileno())


def _entry() -> int:
    try:
        return main()
    except BrokenPipeError:
        # A reader that stops early while a listing prints (`--list | head`) is not a
        # failure: the listing was all there was to do. A sweep says so itself (main).
        _silence_output()
        return exits.OK


if __name__ == "__main__":
    sys.exit(_entry())
