"""CI performance gates: ``python -m suites.ci``.

    python -m suites.ci                    # every gate, a history row each; exit 1 on failure
    python -m suites.ci --only lsh4_vs_full_8k --no-history   # reproduce one figure locally
    python -m suites.ci --bench-json PATH  # gate an existing pytest-benchmark JSON
    python -m suites.ci --update-baseline --why "LSH kernel now fuses rounds"  # on purpose
    python -m suites.ci --update-baseline --only lsh4_vs_sdpa_2k --runs 4 --why "new gate"
                                           # one figure's baseline; the others are kept

Deterministic figures are measured here; ratio figures come from the benchmarks in
suites/ci/benchmarks, run in a child pytest that writes results/ci/bench/<run_id>.json. Every run
appends one row per figure to results/ci/history.jsonl unless --no-history is given.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from suites.ci import baseline as baseline_file
from suites.ci.bench import read_ratios, run_benchmarks
from suites.ci.deterministic import MEASURES
from suites.ci.gates import SPECS, Outcome, check_limits, check_ratio, skipped
from suites.ci.history import append_history, history_rows, run_provenance
from suites.harness.environment import REPO_ROOT
from suites.rows.store import COMMITTED_OUT, utc_stamp

DEFAULT_CI_DIR = REPO_ROOT / COMMITTED_OUT / "ci"
UPDATE_RUNS = 3


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m suites.ci",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--only",
        action="append",
        metavar="FIGURE",
        choices=tuple(SPECS),
        help="gate only this figure (repeatable; with --update-baseline, measure and "
        "store only these, keeping every other figure's baseline); allowed: " + ", ".join(SPECS),
    )
    parser.add_argument(
        "--bench-json",
        action="append",
        type=Path,
        metavar="PATH",
        help="read ratios from this pytest-benchmark JSON instead of running "
        "suites/ci/benchmarks (repeatable with --update-baseline: one file "
        "per run)",
    )
    parser.add_argument(
        "--no-history",
        action="store_true",
        help="local reproduction: append nothing to history.jsonl and write "
        "the benchmark JSON to a temporary folder",
    )
    parser.add_argument(
        "--update-baseline",
        action="store_true",
        help="measure the ratios and write them into baseline.json",
    )
    parser.add_argument("--why", default="", help="with --update-baseline: why it moves")
    parser.add_argument(
        "--runs",
        type=int,
        default=UPDATE_RUNS,
        help=f"with --update-baseline: separate benchmark runs whose median "
        f"ratio is stored (default {UPDATE_RUNS})",
    )
    parser.add_argument(
        "--ci-dir",
        type=Path,
        default=DEFAULT_CI_DIR,
        help="where baseline.json, history.jsonl and bench/ live",
    )
    args = parser.parse_args(argv)
    if args.update_baseline and not args.why.strip():
        parser.error(
            '--update-baseline needs --why "...": the reason is logged in '
            "baseline.json and belongs in the commit message"
        )
    if args.why and not args.update_baseline:
        parser.error("--why only goes with --update-baseline")
    if args.runs < 1:
        parser.error(f"--runs={args.runs} must be >= 1")
    if args.bench_json and len(args.bench_json) > 1 and not args.update_baseline:
        parser.error("give one --bench-json to gate (several only with --update-baseline)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = args.only or list(SPECS)
    run_id = utc_stamp()
    provenance = run_provenance()
    command = shlex.join(["python", "-m", "suites.ci", *(sys.argv[1:] if argv is None else argv)])
    ratio_names = [name for name in names if SPECS[name].kind == "ratio"]
    if args.update_baseline:
        return update(args, ratio_names, run_id, provenance, command)

    outcomes = [
        measure_deterministic(name) for name in names if SPECS[name].kind == "deterministic"
    ]
    bench_json = None
    if ratio_names:
        bench_json = _bench_jsons(args, ratio_names, run_id)[0]
        outcomes += gate_ratios(
            ratio_names, bench_json, args.ci_dir / "baseline.json", provenance["cpu_model"]
        )
    if not args.no_history:
        append_history(
            args.ci_dir / "history.jsonl",
            history_rows(
                outcomes,
                run_id=run_id,
                provenance=provenance,
                bench_json=_relative(bench_json),
                command=command,
            ),
        )
    return report(outcomes)


def measure_deterministic(name: str) -> Outcome:
    start = time.perf_counter()
    print(f"measuring {name} ...", flush=True)
    try:
        value, detail = MEASURES[name]()
    except Exception as exc:  # a broken model must fail the gate, not crash the run
        return Outcome(
            figure=name,
            kind="deterministic",
            status="fail",
            value=None,
            unit=SPECS[name].unit,
            limit=SPECS[name].limit_text(),
            message=(
                f"FAIL {name}: measuring it raised {type(exc).__name__}: {exc}; "
                f"reproduce: {SPECS[name].reproduce()}"
            ),
        )
    outcome = check_limits(name, value, detail)
    print(f"  {outcome.message} [{time.perf_counter() - start:.1f} s]", flush=True)
    return outcome


def gate_ratios(
    names: list[str], bench_json: Path, baseline_path: Path, machine: str
) -> list[Outcome]:
    """Gate each ratio in ``bench_json`` against the baseline of this machine kind (its
    ``cpu_model``). A kind with no baseline, or without this figure's, skips the gate and
    says how to measure one; the measured ratio is still kept in the history."""
    baseline = baseline_file.load_baseline(baseline_path, machine)
    measured = read_ratios(bench_json) if bench_json.exists() else {}
    outcomes = []
    for name in names:
        figure = SPECS[name]
        if not baseline.ratios:
            known = ", ".join(repr(kind) for kind in baseline.machines) or "none"
            outcomes.append(
                skipped(
                    name,
                    f"no baseline was measured on this machine kind ({machine!r}; baselines "
                    f"exist for: {known}), and a ratio from another CPU says nothing about "
                    f"this one; measure one on an idle machine: python -m suites.ci "
                    f'--update-baseline --runs 3 --why "first baseline on {machine}"',
                )
            )
            continue
        if name not in measured:
            if figure.requires_peer and not _peer_available(figure.requires_peer):
                outcomes.append(
                    skipped(
                        name, f"{figure.requires_peer} is not installed (pip install '.[peers]')"
                    )
                )
                continue
            outcomes.append(
                Outcome(
                    figure=name,
                    kind="ratio",
                    status="fail",
                    value=None,
                    unit=figure.unit,
                    message=(
                        f"FAIL {name}: no result in {bench_json}: its benchmark failed or "
                        f"was skipped (see the pytest output above); reproduce: "
                        f"{figure.reproduce()}"
                    ),
                )
            )
            continue
        info = measured[name]
        if name not in baseline.ratios:
            # A gate added since this machine kind's baseline was measured: it can only be
            # measured on such a machine, so it is said, not failed.
            outcome = skipped(
                name,
                f"measured {info['ratio']:.3f}, but {baseline_path} has no baseline of it for "
                f"{machine!r}; "
                f"measure one on an idle machine of this kind: python -m suites.ci "
                f'--update-baseline --only {name} --runs 3 --why "..."',
            )
            outcomes.append(replace(outcome, value=float(info["ratio"]), detail=info))
            continue
        outcomes.append(
            check_ratio(name, float(info["ratio"]), baseline.ratios[name], baseline.tolerance, info)
        )
    return outcomes


def update(
    args: argparse.Namespace,
    names: list[str],
    run_id: str,
    provenance: dict[str, Any],
    command: str,
) -> int:
    if not names:
        print("--update-baseline: none of the selected figures is a ratio figure", file=sys.stderr)
        return 2
    paths = _bench_jsons(args, names, run_id, runs=args.runs)
    runs: dict[str, list[dict[str, Any]]] = {}
    for path in paths:
        measured = read_ratios(path)
        for name in names:
            if name in measured:
                runs.setdefault(name, []).append(measured[name])
    incomplete = [name for name in names if 0 < len(runs.get(name, [])) < len(paths)]
    if incomplete:
        print(
            f"baseline unchanged: {incomplete} measured in only some runs; see the pytest "
            "output above",
            file=sys.stderr,
        )
        return 1
    path = args.ci_dir / "baseline.json"
    old = baseline_file.load_baseline(path, provenance["cpu_model"])
    content = baseline_file.updated_baseline(old, runs, why=args.why, provenance=provenance)
    baseline_file.write_baseline(path, content)
    figures = content["machines"][old.machine]["figures"]
    print(f"baseline of machine kind {old.machine!r}:")
    for name in sorted(runs):
        entry = figures[name]
        print(
            f"{name}: {old.ratios.get(name)} -> {entry['ratio']:.3f} (runs "
            f"{', '.join(f'{r:.3f}' for r in entry['runs'])})"
        )
    for name in sorted(set(names) - set(runs)):
        print(f"{name}: not measured (skipped), baseline kept")
    if not args.no_history:
        outcomes = [
            Outcome(
                figure=name,
                kind="ratio",
                status="baseline",
                value=figures[name]["ratio"],
                unit=SPECS[name].unit,
                baseline=figures[name]["ratio"],
                tolerance=content["tolerance"],
                detail=figures[name],
                message=f"baseline {name} set: {args.why.strip()}",
            )
            for name in sorted(runs)
        ]
        append_history(
            args.ci_dir / "history.jsonl",
            history_rows(
                outcomes,
                run_id=run_id,
                provenance=provenance,
                bench_json=", ".join(filter(None, map(_relative, paths))),
                command=command,
            ),
        )
    print(
        f"\nwrote {path}. Commit it with the reason, e.g.:\n  git commit -m "
        f'"ci: update perf baseline: {args.why.strip()}" {_relative(path)}'
    )
    return 0


def report(outcomes: list[Outcome]) -> int:
    failed = [outcome for outcome in outcomes if outcome.status == "fail"]
    print("\nCI perf gates")
    for outcome in outcomes:
        print(f"  {outcome.message}")
    if failed:
        print(f"\n{len(failed)} of {len(outcomes)} perf gates FAILED:", file=sys.stderr)
        for outcome in failed:
            print(f"  {outcome.message}", file=sys.stderr)
        return 1
    print(
        f"all {len(outcomes)} perf gates passed "
        f"({sum(o.status == 'skipped' for o in outcomes)} skipped)"
    )
    return 0


def _bench_jsons(
    args: argparse.Namespace, names: list[str], run_id: str, runs: int = 1
) -> list[Path]:
    if args.bench_json:
        return list(args.bench_json)
    # Every figure asked for here is a benchmark one (its bench node is set).
    nodes = [bench for name in names if (bench := SPECS[name].bench) is not None]
    # A local reproduction (--no-history) leaves results/ci untouched: its JSON goes to /tmp.
    out_dir = (
        Path(tempfile.mkdtemp(prefix="suites-ci-")) if args.no_history else args.ci_dir / "bench"
    )
    paths = []
    for index in range(runs):
        suffix = f"-{index + 1}" if runs > 1 else ""
        path = out_dir / f"{run_id}{suffix}.json"
        start = time.perf_counter()
        exit_code = run_benchmarks(path, nodes)
        print(
            f"benchmarks {index + 1}/{runs}: pytest exit {exit_code} "
            f"[{time.perf_counter() - start:.0f} s] -> {path}",
            flush=True,
        )
        paths.append(path)
    return paths


def _peer_available(model: str) -> bool:
    from baselines.peers import peer_available

    return peer_available(model)


def _relative(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


if __name__ == "__main__":
    sys.exit(main())
