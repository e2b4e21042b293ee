"""The end-of-run summary: where the rows are, status counts, load, the suite's own lines.

Short on purpose: the few lines that answer the suite's question (suites.harness.points.Suite
``summarize``). Every measured number is in the run's results file, one JSON line per
point; the summary names it. Only the rows of the points this sweep covers are summarized,
never other rows the file may hold (another grid, another machine).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from suites.harness.exits import closing_line, sweep_status
from suites.harness.isolation import inherited_address_limit
from suites.harness.suite import GridContext, Suite
from suites.rows.busy import MARK, busy_note, row_is_busy
from suites.rows.newest import latest_rows
from suites.rows.store import RunFile

LISTED_BUSY = 6  # points named in the load line; the rest are counted


def sweep_rows(run_file: RunFile) -> list[dict[str, Any]]:
    """The newest row of each point this sweep covers (the rows its summary and exit
    status speak for)."""
    return [
        row
        for row in latest_rows(run_file.rows)
        if run_file.planned is None or row.get("point_key") in run_file.planned
    ]


def summary(suite: Suite, ctx: GridContext, run_file: RunFile, max_memory_gb: float | None) -> str:
    """Markdown: where the rows are, status counts, load, the suite's own lines, and why
    the sweep exits non-zero when points ended in error (suites.harness.exits)."""
    rows = sweep_rows(run_file)
    counts = Counter(row.get("status") for row in rows)
    cap = (
        "none"
        if max_memory_gb is None
        else f"{max_memory_gb:g} GiB per point "
        f"({'CUDA memory fraction' if ctx.device == 'cuda' else 'RLIMIT_AS above start-up'})"
    )
    lines = [
        f"## {suite.name} ({ctx.device}, {ctx.mode})",
        "",
        f"every measured number: {run_file.path} (one JSON line per point)",
        f"memory budget: {cap}",
        *_clamped_lines(rows, ctx.device),
        "points: " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items())),
    ]
    lines += _load_lines(rows)
    lines += _error_lines(rows)
    if suite.summarize is not None and rows:
        lines += ["", *suite.summarize(rows, ctx)]
    statuses = [row.get("status") for row in rows]
    closing = closing_line(sweep_status(statuses), statuses)
    if closing:
        lines += ["", closing]
    return "\n".join(lines)


def _clamped_lines(rows: list[dict[str, Any]], device: str) -> list[str]:
    """A cap lowered to the inherited hard address-space limit (suites.harness.isolation) changes
    what oom means, so the summary says so; so does the limit itself, which children that
    died before reporting (too little room to start) cannot."""
    clamped = [row for row in rows if row.get("max_memory_gb_requested") is not None]
    limit = inherited_address_limit() if device == "cpu" else None
    inherited = (
        []
        if limit is None
        else [
            f"inherited hard address-space limit (ulimit -v): {limit / 2**30:.2f} GiB per "
            "process, start-up included; every point's cap is clamped to what it leaves"
        ]
    )
    if not clamped:
        return inherited
    applied = min(float(row["max_memory_gb"]) for row in clamped)
    requested = clamped[0]["max_memory_gb_requested"]
    return inherited + [
        f"memory budget applied: {applied:g} GiB per point for {len(clamped)} of "
        f"{len(rows)} points, not {requested:g}: the hard address-space limit this "
        "process inherited (ulimit -v) allows no more (rows: max_memory_gb, "
        "max_memory_gb_requested)"
    ]


def _error_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The first error message, so a sweep that failed says why without opening the file."""
    errors = [row for row in rows if row.get("status") == "error"]
    if not errors:
        return []
    return [f"first error ({_describe(errors[0])}): {str(errors[0].get('error'))[:300]}"]


def _load_lines(rows: list[dict[str, Any]]) -> list[str]:
    measured = [row for row in rows if row.get("status") != "skipped"]
    busy = [row for row in measured if row_is_busy(row)]
    if not busy:
        return []
    lines = [busy_note(len(busy), len(measured), busy[0].get("n_cpus"))]
    if len(busy) < len(measured):
        named = [
            f"{MARK} {_describe(row)} (load {row['load_avg_1m']:.1f})" for row in busy[:LISTED_BUSY]
        ]
        more = len(busy) - len(named)
        lines += [
            *named,
            *([f"{MARK} ... and {more} more (load_avg_1m in the file)"] if more else []),
        ]
    return lines


def _describe(row: dict[str, Any]) -> str:
    fields = [str(row.get("model")), str(row.get("phase") or "")]
    for name in ("n_layers", "n_hashes", "bucket_size", "seq_len"):
        if row.get(name) is not None:
            fields.append(f"{'L' if name == 'seq_len' else name}={row[name]}")
    return " ".join(f for f in fields if f)
