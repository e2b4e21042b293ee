"""Build paper-style reports from result rows: ``python -m reports.build``.

Reads every ``*.jsonl`` under ``--results`` (default results/), and for each hardware found
in the rows writes ``<out>/<theme>_<hardware>_<date>/`` with report.md, report.html and
figures/*.png (``--dpi``, 300 by default) and *.svg. ``date`` is the day of the newest row,
so rebuilding the same results rewrites the same folder.

    python -m reports.build [--results DIR] [--out DIR] [--theme NAME] [--dpi N]
                            [--hardware TEXT] [--runs latest|all] [--run-id ID ...]
                            [--readme FILE | --no-readme]

By default each suite is drawn from its newest complete run (reports.runs): one results
file, one thread count, one OMP_WAIT_POLICY, so rows taken under different conditions never
share a line. ``--runs all`` draws every run (the newest row of each point); ``--run-id``
draws exactly the runs named. The report lists the runs it drew, and whether each measured
the model code as it now stands. A plain build also writes ``<out>/index.md`` (the current
report of each machine kind, the superseded runs), and the bare command rewrites the
README's results block from the same rows (reports.readme).

Exit status: 0 when the reports were written, 1 when there are no result rows to draw, 2
for bad arguments or paths (a --results that is not a folder, an --out that cannot be a
folder, a --run-id or --hardware that matches nothing), with one line saying which.

A rebuild from the same rows and code writes the same bytes: the report names the newest
commit of the code that draws it, not the time of the build, and the SVGs carry no date
and fixed element ids (reports.context).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from reports.context import ReportContext
from reports.index import INDEX_FILE, current_reports, folder_name, render_index
from reports.load import latest_points, load_history, load_rows, slugify
from reports.readme import BlockError, write_readme
from reports.render.document import Block, Heading, Note, Paragraph, Table, render_markdown
from reports.render.files import write_text_whole
from reports.render.html import render_html
from reports.render.palette import Palette
from reports.render.plotting import apply_theme
from reports.runs import RUN_CHOICES, select_runs
from reports.sections import SECTIONS
from reports.sections.front_matter import (
    counts_table,
    environment_table,
    errors_table,
    runs_caption,
    runs_table,
    stale_note,
)
from reports.sections.measured import measured_blocks
from reports.sections.published import build_published
from suites.rows.schema import SUITE_ORDER
from suites.rows.store import COMMITTED_OUT

log = logging.getLogger("reports")
# Code whose changes can change a report: its newest commit is the report's code version.
# Reports import nothing of the project's but suites.rows (a test keeps it so).
REPORT_CODE = ("reports", "suites/rows")
NO_ROWS, BAD_ARGUMENT, NOT_WRITTEN = 1, 2, 4
# Largest --dpi: a 300-dpi figure already nears the 1 MiB cap of reports.figure_policy, and
# far larger ones exhaust memory while drawing.
MAX_DPI = 1200


class ReportError(Exception):
    """A report that cannot be built, with the exit status that says why."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


# Generated reports live under docs/, apart from the code that builds them.
DEFAULT_OUT = "docs/reports"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m reports.build",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--results",
        default=str(COMMITTED_OUT),
        help=f"folder of *.jsonl result files, read recursively (default: {COMMITTED_OUT})",
    )
    parser.add_argument(
        "--out",
        default=DEFAULT_OUT,
        help=f"where report folders are written (default: {DEFAULT_OUT})",
    )
    parser.add_argument(
        "--theme",
        default="reformer",
        help="report name, first part of the folder name (default: reformer)",
    )
    parser.add_argument("--dpi", type=int, default=300, help="PNG resolution (default: 300)")
    parser.add_argument(
        "--hardware",
        default=None,
        help="only build the report for hardware whose name contains this text",
    )
    parser.add_argument(
        "--runs",
        default="latest",
        choices=RUN_CHOICES,
        help="latest: the newest complete run of each suite (default); all: "
        "every run, newest row per point",
    )
    parser.add_argument(
        "--run-id",
        action="append",
        default=[],
        metavar="ID",
        help="draw exactly this run (a results file's stem); repeatable",
    )
    parser.add_argument(
        "--readme",
        default=None,
        metavar="FILE",
        help="rewrite FILE's results block from these rows (default: README.md when "
        f"--results and --out are the defaults, {COMMITTED_OUT} and {DEFAULT_OUT})",
    )
    parser.add_argument("--no-readme", action="store_true", help="leave every README as it is")
    args = parser.parse_args(argv)
    if args.readme is None and not args.no_readme:
        committed = args.results == str(COMMITTED_OUT) and args.out == DEFAULT_OUT
        args.readme = "README.md" if committed and not (args.hardware or args.run_id) else None
    if args.no_readme:
        args.readme = None
    if args.dpi < 10:
        parser.error(f"--dpi {args.dpi} is too small; use 10 or more (300 for print)")
    if args.dpi > MAX_DPI:
        parser.error(f"--dpi {args.dpi} is too large; use at most {MAX_DPI} (300 for print)")
    if not re.search(r"[A-Za-z0-9]", args.theme):
        parser.error(f"--theme {args.theme!r} needs at least one letter or digit")
    return args


def build_reports(
    results: str,
    out: str,
    theme: str = "reformer",
    dpi: int = 300,
    hardware: str | None = None,
    command: str = "python -m reports.build",
    runs: str = "latest",
    run_ids: Sequence[str] = (),
    readme: str | None = None,
) -> list[Path]:
    """Build one report per hardware in the rows; return the report folders written.

    A plain build (every hardware, the newest runs) also writes ``<out>/index.md``
    (reports.index); with ``readme``, that file's results block is rewritten from the same
    rows (reports.readme). Raises ReportError (with its exit status) when there is nothing
    to draw or an argument or path is wrong."""
    _check_paths(results, out)
    raw = load_rows(results)
    if raw.empty:
        raise ReportError(
            f"no result rows under {results}: run `python -m suites.run SUITE` "
            "first, or pass --results DIR",
            NO_ROWS,
        )
    unknown = sorted(set(run_ids) - set(raw["run_id"].dropna().astype(str)))
    if unknown:
        known = ", ".join(sorted(raw["run_id"].dropna().astype(str).unique()))
        raise ReportError(
            f"--run-id {', '.join(unknown)}: no such run under {results}; runs there: {known}",
            BAD_ARGUMENT,
        )
    history = load_history(results)
    apply_theme()
    written = []
    for slug, rows in raw.groupby("hardware_slug", sort=True):
        if (
            hardware
            and hardware.lower() not in slug
            and hardware.lower() not in str(rows["hardware"].iloc[0]).lower()
        ):
            continue
        if run_ids and not rows["run_id"].astype(str).isin(run_ids).any():
            continue
        try:
            written.append(
                _build_one(rows, history, Path(out), theme, dpi, results, command, runs, run_ids)
            )
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename else ""
            raise ReportError(
                f"could not write the report under {out}{where}: {exc.strerror or exc}; every "
                "file is written whole or not at all, so none is truncated. Free the space "
                "(or fix the folder) and build again",
                NOT_WRITTEN,
            ) from exc
    if not written:
        found = ", ".join(sorted(raw["hardware_slug"].unique()))
        raise ReportError(
            f"--hardware {hardware!r} matches none of the hardware in the rows: {found}",
            BAD_ARGUMENT,
        )
    try:
        if not hardware and not run_ids and runs == "latest":
            _write_index(raw, Path(out), theme, written)
        if readme is not None:
            write_readme(Path(readme), raw, theme, Path(out))
    except BlockError as exc:
        raise ReportError(str(exc), BAD_ARGUMENT) from None
    except OSError as exc:
        raise ReportError(
            f"could not write {exc.filename or readme}: {exc.strerror or exc}; it is written "
            "whole or not at all",
            NOT_WRITTEN,
        ) from exc
    return written


def _write_index(raw: pd.DataFrame, out: Path, theme: str, written: list[Path]) -> None:
    """index.md beside the reports, and a warning for each older report folder of the
    same theme and machine kind, which a rebuild no longer makes."""
    reports = current_reports(raw, theme)
    write_text_whole(out / INDEX_FILE, render_index(raw, reports))
    current = {path.name for path in written}
    prefix = f"{slugify(theme, max_len=60)}_"
    for folder in sorted(out.glob(f"{prefix}*")):
        if folder.is_dir() and folder.name not in current:
            log.warning(
                "%s: a report this build no longer makes (superseded by newer runs, or "
                "from rows no longer in --results); remove it",
                folder,
            )


def _check_paths(results: str, out: str) -> None:
    """--results must be a folder and --out one that can be written, said in one line."""
    if not Path(results).is_dir():
        what = "is not a folder" if Path(results).exists() else "does not exist"
        raise ReportError(
            f"--results {results} {what}: give the folder of *.jsonl result files "
            "(python -m suites.run writes them under runs/)",
            BAD_ARGUMENT,
        )
    try:
        Path(out).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(
            f"--out {out} cannot be a folder of reports ({exc.strerror or exc})", BAD_ARGUMENT
        ) from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise ReportError(f"--out {out} is not a writable folder", BAD_ARGUMENT)


def _build_one(
    raw: pd.DataFrame,
    history: pd.DataFrame,
    out: Path,
    theme: str,
    dpi: int,
    results: str,
    command: str,
    runs: str,
    run_ids: Sequence[str],
) -> Path:
    drawn, chosen = select_runs(raw, runs, run_ids)
    rows = latest_points(drawn)
    hardware, slug = rows["hardware"].iloc[0], rows["hardware_slug"].iloc[0]
    folder, date = folder_name(theme, slug, rows)
    out_dir = out / folder
    _clear_figures(out_dir)
    ctx = ReportContext(
        rows=rows,
        history=history,
        out_dir=out_dir,
        palette=Palette(rows["model"].astype(str)),
        results_arg=results,
        build_command=command,
        dpi=dpi,
    )
    # No build time: a rebuild of the same rows by the same code must not change a byte.
    built = {"report code git sha": _code_sha(), "report command": command}
    known = known_suites()
    suites = sorted(
        rows["suite"].unique(),
        key=lambda s: (s not in known, known.index(s) if s in known else 0, s),
    )
    blocks: list[Block] = [
        Paragraph(
            f"Reformer benchmark results on {hardware}, built from {results}/. "
            "Every figure lists the commands that reproduce it."
        ),
        Heading("Environment"),
        environment_table(rows, built),
        Table(runs_table(chosen), runs_caption(runs, run_ids, len(raw) - len(drawn)), index=False),
        Heading("Measured points"),
        counts_table(rows, len(drawn)),
    ]
    errors = errors_table(rows)
    if errors is not None:
        blocks.append(errors)
    section_blocks: list[Block] = []
    from_others = []
    for section in SECTIONS:
        made = section.build(ctx)
        if made is None:
            section_blocks.append(Note(f"{section.title}: omitted, no {section.needs}."))
        else:
            stale = stale_note(chosen, section.suites())
            section_blocks += [Heading(section.title), *([stale] if stale else []), *made]
            if section.key in known and section.key not in suites:
                from_others.append(section.title)
    missing = [s for s in known if s not in suites]
    if missing:
        # A section named after a suite may still draw another suite's rows (the hash-rounds
        # section draws the quality suite's duplication task), so the note says which.
        others = (
            f"; drawn from other suites' rows below: {', '.join(from_others)}"
            if from_others
            else ""
        )
        blocks.append(Note(f"No results for suites: {', '.join(missing)}{others}."))
    blocks += section_blocks
    blocks += [Heading("Measured numbers"), *measured_blocks(ctx, suites)]
    blocks += [Heading("Published reference numbers"), *build_published(ctx)]
    title = f"{theme}: {hardware}, {date}"
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_whole(out_dir / "report.md", render_markdown(title, blocks))
    write_text_whole(out_dir / "report.html", render_html(title, blocks))
    return out_dir


def known_suites() -> list[str]:
    """Every suite (suites.rows.schema.SUITE_ORDER, read without importing any grid), in the
    order of the report's sections."""
    ordered = [section.key for section in SECTIONS if section.key in SUITE_ORDER]
    return ordered + [name for name in SUITE_ORDER if name not in ordered]


def _clear_figures(out_dir: Path) -> None:
    """A rebuild must not leave figures of a section that no longer has data."""
    for path in (out_dir / "figures").glob("*"):
        if path.suffix in (".png", ".svg"):
            path.unlink()


def _code_sha() -> str:
    """The newest commit of the code that draws reports (REPORT_CODE), not HEAD: a commit
    elsewhere (new results, docs) leaves a rebuilt report as it was."""
    here = Path(__file__).resolve().parent.parent
    sha = _git(here, "log", "-1", "--format=%h", "--", *REPORT_CODE)
    if not sha:
        return "unknown (not a git checkout)"
    dirty = _git(here, "status", "--porcelain", "--", *REPORT_CODE)
    return f"{sha} (with uncommitted changes)" if dirty else sha


def _git(cwd: Path, *args: str) -> str:
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    command = shlex.join(["python", "-m", "reports.build", *argv])
    try:
        folders = build_reports(
            args.results,
            args.out,
            args.theme,
            args.dpi,
            args.hardware,
            command,
            args.runs,
            args.run_id,
            args.readme,
        )
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.status
    for folder in folders:
        print(f"wrote {folder / 'report.md'} and {folder / 'report.html'}")
    if args.readme:
        print(f"wrote the results block of {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
