"""The end-of-run summary: where the rows are, status counts, load, the suite's own lines.

Short on purpose: the few lines that answer the suite's question (suites.registry.Suite
``summarize``). Every measured number is in the run's results file, one JSON line per
point; the summary names it. Only the rows of the points this sweep covers are summarised,
never other rows the file may hold (another grid, another machine).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from suites.busy import MARK, busy_note, row_is_busy
from suites.registry import GridContext, Suite
from suites.rows import latest_rows
from suites.store import RunFile

LISTED_BUSY = 6  # points named in the load line; the rest are counted


def summary(suite: Suite, ctx: GridContext, run_file: RunFile, max_memory_gb: float | None) -> str:
    """Markdown: where the rows are, status counts, load, the suite's own lines."""
    rows = [
        row
        for row in latest_rows(run_file.rows)
        if run_file.planned is None or row.get("point_key") in run_file.planned
    ]
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
        "points: " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items())),
    ]
    lines += _load_lines(rows)
    if suite.summarize is not None and rows:
        lines += ["", *suite.summarize(rows, ctx)]
    return "\n".join(lines)


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
    fields = [str(row.get("model")), str(row.get("pass") or "")]
    for name in ("n_layers", "n_hashes", "bucket_size", "seq_len"):
        if row.get(name) is not None:
            fields.append(f"{'L' if name == 'seq_len' else name}={row[name]}")
    return " ".join(f for f in fields if f)
