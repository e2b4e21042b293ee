"""The end-of-run summary: where the rows are, status counts, a table, the suite's lines."""

from __future__ import annotations

from collections import Counter

from suites.registry import GridContext, Suite
from suites.rows import latest_rows
from suites.store import RunFile

SUMMARY_COLUMNS = ("model", "impl", "pass", "seq_len", "batch", "n_layers", "reversible",
                   "ff_chunks", "n_hashes", "bucket_size", "status", "t_median_ms",
                   "peak_mb", "saved_mb", "tokens_per_s", "tflops_per_s")
ALWAYS_SHOWN = ("model", "seq_len", "status", "t_median_ms", "peak_mb")


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
