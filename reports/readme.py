"""The README's results block, written by the build from the committed rows.

Between ``<!-- results-block:start ... -->`` and ``<!-- results-block:end -->`` the README
holds one line per headline figure (reports.headline): the figure, its value, the machine
kind, when and at which commit it was measured, whether that is the model code as it now
stands ("code since", suites.rows.staleness) and the results file it was read from.

Which run each figure comes from: of the runs of its suite (any machine kind), the
complete ones (reports.runs), those that measured the current model code first, then the
newest; the first that has the points the figure needs. While no run of a suite is current
(after a change to reformer/ or baselines/, until the suite is measured again), the newest
run is used and its line says how many model commits came after it: the block is never
left with holes, and never claims currency it does not have.

``python -m reports.build`` rewrites the block (whole-file atomic write);
``python -m reports.readme --check`` exits 1 when the committed README differs from what
the committed rows give, and tests/reports/test_readme_block.py does the same in CI.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from reports.headline import HEADLINES, Headline, Reading
from reports.index import INDEX_FILE, current_reports
from reports.load import latest_points, load_rows
from reports.render.files import write_text_whole
from reports.runs import label_runs, summarize_runs
from suites.rows.busy import MARK
from suites.rows.samples import FEW_MARK, FEW_RULE
from suites.rows.staleness import Staleness

START = "<!-- results-block:start"
END = "<!-- results-block:end -->"
START_LINE = (
    f"{START} (written by `python -m reports.build` from results/; edits here are overwritten) -->"
)


class BlockError(ValueError):
    """The README lacks the block's markers, or holds them out of order."""


def results_block(raw: pd.DataFrame, theme: str, reports_dir: Path, readme_dir: Path) -> str:
    """The block, markers included, for the rows ``raw`` (reports.load.load_rows)."""
    reports_dir, readme_dir = reports_dir.resolve(), readme_dir.resolve()
    labelled = label_runs(raw)
    runs = summarize_runs(labelled)
    lines = [
        "| figure | value | machine | measured | code since | results file |",
        "|---|---|---|---|---|---|",
    ]
    for headline in HEADLINES:
        found = _read(headline, labelled, runs)
        if found is None:
            continue
        reading, code = found
        lines.append(_line(reading, code))
    links = ", ".join(
        f"[{report.hardware}]({_link(reports_dir / report.folder / 'report.md', readme_dir)})"
        for report in current_reports(raw, theme)
    )
    index = _link(reports_dir / INDEX_FILE, readme_dir)
    header = (
        "Each figure is read from the newest complete run of its suite that measured it, a "
        "run of the model code as it now stands first. 'code since' says whether the run "
        "measured this code (current) or how many commits to `reformer/` or `baselines/` "
        f"came after it. {MARK} measured under load; {FEW_MARK} {FEW_RULE}. Every point "
        f"is in the reports, one per machine kind: {links} ([all reports]({index}))."
    )
    return "\n".join([START_LINE, header, "", *lines, END])


def _read(
    headline: Headline, rows: pd.DataFrame, runs: pd.DataFrame
) -> tuple[Reading, Staleness] | None:
    """The reading of the first run of the headline's suite that has its points."""
    mine = runs[runs["suite"] == headline.suite]
    if mine.empty:
        return None
    complete = mine[mine["complete"]]
    pool = complete if not complete.empty else mine
    order = pool.assign(current=[code.current for code in pool["staleness"]]).sort_values(
        ["current", "newest"], ascending=False, kind="stable"
    )
    for run, code in zip(order["run"], order["staleness"], strict=True):
        drawn = rows[(rows["suite"] == headline.suite) & (rows["run"] == run)]
        reading = headline.read(latest_points(drawn))
        if reading is not None:
            return reading, code
    return None


def _line(reading: Reading, code: Staleness) -> str:
    rows = reading.rows
    machine = str(rows["hardware"].iloc[0]) if "hardware" in rows else "?"
    cpus = rows["n_cpus"].dropna() if "n_cpus" in rows else pd.Series(dtype=float)
    if not cpus.empty and rows["gpu_name"].isna().all():
        machine += f", {int(cpus.iloc[0])} cores"
    stamps = pd.to_datetime(rows["timestamp_utc"], utc=True, errors="coerce").dropna()
    sha = code.sha[:7] if code.sha else "?"
    date = f"{stamps.max():%Y-%m-%d}" if not stamps.empty else "?"
    files = ", ".join(f"`{Path(s).name}`" for s in sorted(set(rows["source"].dropna())))
    return (
        f"| {reading.figure} | {reading.value} | {machine} | {date} at {sha} | {code.label()} | "
        f"{files} |"
    )


def _link(target: Path, start: Path) -> str:
    return Path(os.path.relpath(target, start)).as_posix()


def replace_block(text: str, block: str, name: str = "README.md") -> str:
    """``text`` with its results block replaced by ``block``; BlockError naming what is
    missing when ``text`` has no block."""
    start, end = text.find(START), text.find(END)
    if start < 0 or end < 0 or end < start:
        raise BlockError(
            f"{name} has no results block: it needs a line starting {START!r} and, after "
            f"it, a line {END!r}; the build writes between them"
        )
    return text[:start] + block + text[end + len(END) :]


def write_readme(readme: Path, raw: pd.DataFrame, theme: str, reports_dir: Path) -> bool:
    """Rewrite ``readme``'s block (whole-file atomic write); True when it changed."""
    text = readme.read_text(encoding="utf-8")
    block = results_block(raw, theme, reports_dir, readme.resolve().parent)
    new = replace_block(text, block, str(readme))
    if new != text:
        write_text_whole(readme, new)
    return new != text


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m reports.readme",
        description="Write, or with --check compare, the README's results block.",
    )
    parser.add_argument("--results", default="results", help="rows to read (default: results)")
    parser.add_argument("--readme", default="README.md", help="the README (default: README.md)")
    parser.add_argument(
        "--reports", default="docs/reports", help="where the reports are (default: docs/reports)"
    )
    parser.add_argument("--theme", default="reformer", help="report name (default: reformer)")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if the block differs; write nothing"
    )
    args = parser.parse_args(argv)
    readme = Path(args.readme)
    if not readme.is_file():
        print(f"error: --readme {readme} is not a file", file=sys.stderr)
        return 2
    if not Path(args.results).is_dir():
        print(f"error: --results {args.results} is not a folder of result rows", file=sys.stderr)
        return 2
    raw = load_rows(args.results)
    text = readme.read_text(encoding="utf-8")
    try:
        expected = replace_block(
            text,
            results_block(raw, args.theme, Path(args.reports), readme.resolve().parent),
            str(readme),
        )
    except BlockError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        if expected != text:
            print(
                f"{readme}: the results block differs from what {args.results}/ gives; run "
                "`python -m reports.build` (or `python -m reports.readme`) and commit it",
                file=sys.stderr,
            )
            return 1
        return 0
    if expected != text:
        write_text_whole(readme, expected)
        print(f"wrote the results block of {readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
