"""``python -m suites.record``: what the committed record needs on this machine, and (with
``--run``) measuring it.

    python -m suites.record                      # per suite: newest run here, state, time
    python -m suites.record --run                # measure every suite not current, in order
    python -m suites.record --run --suites hashes,chunks --commit

Without ``--run`` nothing is measured: the table says, per suite of the record
(suites.record.plan), its newest committed run on this CPU model, its state
(suites.record.state) and its expected wall time. ``--run`` measures the suites that are
not current, one ``python -m suites.run SUITE --out results ...`` each (``--fresh``, or a
resume of a stopped run at the current code), waiting before each for the 1-minute load to
fall below 0.5 (suites.record.quiet), then rebuilds the reports. Killed and started again,
it continues where it stopped: the state is read from the results files, not kept aside.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

from suites.harness import exits
from suites.harness.environment import REPO_ROOT, cpu_model
from suites.record.plan import Entry, select
from suites.record.quiet import QUIET_LOAD, Busy, wait_for_quiet
from suites.record.state import SuiteState, suite_state
from suites.rows.store import COMMITTED_OUT

DEFAULT_MAX_WAIT_S = 1800.0
# A suite that stopped (not one with failed points, which are rows too) stops the record.
STOPPED = (exits.INTERRUPTED, exits.TERMINATED, exits.NOT_RECORDED)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m suites.record",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--run", action="store_true", help="measure what is not current")
    parser.add_argument(
        "--suites", metavar="A,B", help="only these suites of the record (default: all)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=COMMITTED_OUT,
        help="results folder (default: results, the committed record)",
    )
    parser.add_argument(
        "--max-wait",
        type=float,
        default=DEFAULT_MAX_WAIT_S,
        metavar="SECONDS",
        help=f"--run: how long to wait for the load to fall below {QUIET_LOAD} before a "
        f"suite, > 0 (default {DEFAULT_MAX_WAIT_S:.0f})",
    )
    parser.add_argument(
        "--commit",
        action="store_true",
        help="--run: git-commit each suite's results file as soon as it completes, and the "
        "rebuilt reports at the end",
    )
    parser.add_argument(
        "--no-reports", action="store_true", help="--run: do not rebuild the reports"
    )
    args = parser.parse_args(argv)
    if args.max_wait <= 0:
        parser.error(f"--max-wait={args.max_wait} must be > 0 seconds")
    if not args.run and (args.commit or args.no_reports):
        parser.error("--commit and --no-reports go with --run")
    try:
        args.entries = select(args.suites)
    except ValueError as exc:
        parser.error(str(exc))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    machine = cpu_model()
    out = args.out if args.out.is_absolute() else REPO_ROOT / args.out
    states = [
        suite_state(entry, out, machine, planned_points=planned_points(entry))
        for entry in args.entries
    ]
    print(table(states, machine))
    todo = [state for state in states if state.todo]
    if not args.run:
        if todo:
            print("\nmeasure them: python -m suites.record --run  (on an idle machine)")
        return exits.OK
    if not todo:
        print("\nnothing to measure: every suite is current")
        return _reports(args)
    for state in todo:
        entry = state.entry
        try:
            wait_for_quiet(args.max_wait, say=_say)
        except Busy as exc:
            print(f"error: {entry.suite} not started: {exc}", file=sys.stderr)
            return exits.NOT_RECORDED
        command = entry.command(str(args.out), fresh=not state.resume)
        how = "resuming " + state.path.name if state.resume and state.path else "fresh"
        about = _duration(state.estimate_s)
        _say(f"\n== {entry.suite} ({how}; about {about}): {shlex.join(command)}")
        code = subprocess.call([sys.executable, *command[1:]], cwd=REPO_ROOT)
        if code in STOPPED:
            print(
                f"record stopped in {entry.suite} (exit {code}); run the same command again "
                "to resume it",
                file=sys.stderr,
            )
            return code
        after = suite_state(entry, out, machine, planned_points=planned_points(entry))
        _say(f"{entry.suite}: exit {code}, now {after.state} ({after.detail})")
        if args.commit and after.path is not None:
            _commit([after.path], f"results: {entry.suite} on {machine} ({after.detail})")
    return _reports(args)


def planned_points(entry: Entry) -> list[int] | None:
    """The length of each point of the entry's grid today (None where flags filter it)."""
    if entry.lengths or entry.seeds != 1:
        return None
    from suites.harness.suite import GridContext
    from suites.registry import load_suites

    points = load_suites()[entry.suite].grid(GridContext(device="cpu", mode=entry.mode))
    return [point.seq_len for point in points]


def table(states: list[SuiteState], machine: str) -> str:
    """The per-suite table, and the total time of what is not current."""
    lines = [
        f"record on {machine!r} (results of this CPU model only)",
        "",
        "| suite | newest run here | state | | expected wall | estimate from |",
        "|---|---|---|---|---|---|",
    ]
    for state in states:
        run = state.path.name if state.path else "-"
        lines.append(
            f"| {state.entry.suite} | {run} | {state.state} | {state.detail} | "
            f"{_duration(state.estimate_s)} | {state.estimate_from} |"
        )
    todo = [state for state in states if state.todo]
    total = sum(state.estimate_s for state in todo)
    lines.append("")
    lines.append(
        f"to measure: {len(todo)} of {len(states)} suites, about {_duration(total)} of machine "
        "time (plus about a minute per suite waiting for the load to settle)"
        if todo
        else "every suite is current"
    )
    return "\n".join(lines)


def _reports(args: argparse.Namespace) -> int:
    if args.no_reports:
        return exits.OK
    _say("\n== reports: python -m reports.build")
    code = subprocess.call([sys.executable, "-m", "reports.build"], cwd=REPO_ROOT)
    if code == 0 and args.commit:
        _commit(
            [REPO_ROOT / "docs" / "reports", REPO_ROOT / "README.md"],
            "Reports rebuilt from the record",
        )
    return code


def _commit(paths: list[Path], message: str) -> None:
    """Commit these paths alone (never whatever else is staged or changed)."""
    names = [str(path) for path in paths]
    subprocess.call(["git", "add", "--", *names], cwd=REPO_ROOT)
    code = subprocess.call(["git", "commit", "-q", "-m", message, "--", *names], cwd=REPO_ROOT)
    _say(f"committed: {message}" if code == 0 else f"warning: git commit exited {code}")


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    return (
        f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{max(minutes, 1)} min"
    )


def _say(text: str) -> None:
    print(text, flush=True)


if __name__ == "__main__":
    sys.exit(main())
