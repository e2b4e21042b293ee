"""Measured numbers: every suite's rows as tables, in paper form.

One line per model (and whatever else the suite varies), one column per length, failures
spelt out (OOM, timeout, error, skipped) where a number would be; a time measured under
load carries MARK.
"""

from __future__ import annotations

import pandas as pd

from reports.context import ReportContext
from reports.load import CONFIG_COLUMNS
from reports.render.document import Block, Table, fmt
from suites.rows.busy import MARK, RULE, row_is_busy

# Metrics that load inflates (memory does not depend on it); their cells carry MARK when
# the point was measured under load (suites.rows.busy).
LOAD_SENSITIVE = ("t_median_ms", "tokens_per_s", "tflops_per_s")
BUSY_NOTE = (
    f"measured with the {RULE}: times inflated, not comparable with an idle run's "
    "(memory is unaffected)."
)
SUITE_METRICS = {
    "memory": (("peak_mib", "peak memory (MiB)"), ("saved_mib", "saved for backward (MiB)")),
    "time": (("t_median_ms", "median time per step (ms)"),),
}
DEFAULT_METRICS = (("t_median_ms", "median time per step (ms)"), ("peak_mib", "peak memory (MiB)"))
_FAILED = {"oom": "OOM", "timeout": "timeout", "error": "error", "skipped": "skipped"}


def paper_form(rows: pd.DataFrame, metric: str, model_order: tuple[str, ...] = ()) -> pd.DataFrame:
    """Models (and fields varying within a model) down, lengths across; failures named.

    Returns a flat frame: the line-identifying columns first, then one column per length.
    Models come in ``model_order`` (the report's legend order), then alphabetically.
    """
    ignore = {"seq_len", "model", "n_buckets", "seed"}
    if rows["suite"].eq("time").all():
        ignore.add("batch")  # fixed tokens per batch: batch follows L
    index = ["model"] + [
        c
        for c in CONFIG_COLUMNS
        if c not in ignore
        # A field a failed point's row lacks (num_threads) does not split a line.
        and (rows.groupby("model", dropna=False)[c].nunique(dropna=True) > 1).any()
    ]
    if "autocast" in rows and rows["autocast"].notna().any():
        # The scale suite's mixed-precision points are lines of their own (null: none).
        rows = rows.assign(autocast=rows["autocast"].fillna("none"))
        index.append("autocast")
    marked = metric in LOAD_SENSITIVE

    def cell(r: pd.Series) -> str:
        if r["status"] != "ok":
            return _FAILED.get(r["status"], "?")
        return fmt(r[metric]) + (f" {MARK}" if marked and row_is_busy(r.to_dict()) else "")

    cells = rows.apply(cell, axis=1)
    labels = rows[index].map(lambda v: "" if pd.isna(v) else fmt(v))
    lengths = rows["seq_len"]
    table = (
        labels.assign(L=lengths, cell=cells)
        .dropna(subset=["L"])
        .drop_duplicates(subset=[*index, "L"], keep="last")
        .pivot(index=index, columns="L", values="cell")
    )
    table.columns = [fmt(length) for length in table.columns]
    rank = {model: i for i, model in enumerate(model_order)}
    table = (
        table.reset_index()
        .fillna("")
        .sort_values(
            index,
            key=lambda column: (
                column.map(lambda m: (rank.get(m, len(rank)), m))
                if column.name == "model"
                else _numeric_if_possible(column)
            ),
        )
    )
    metric_cells = table.columns[len(index) :]
    return table[(table[metric_cells] != "").any(axis=1)].reset_index(drop=True)


def _numeric_if_possible(column: pd.Series) -> pd.Series:
    """Sort 32 < 64 < 128 for numbers written as text; text stays text."""
    numbers = pd.to_numeric(column, errors="coerce")
    return numbers if numbers.notna().all() else column


def measured_blocks(ctx: ReportContext, suites: list[str]) -> list[Block]:
    blocks: list[Block] = []
    for suite in suites:
        if suite == "quality":
            continue  # the quality section tabulates it
        rows = ctx.suite(suite)
        for metric, label in SUITE_METRICS.get(suite, DEFAULT_METRICS):
            if rows.loc[rows["status"] == "ok", metric].notna().any():
                table = paper_form(rows, metric, ctx.palette.order)
                marked = (
                    metric in LOAD_SENSITIVE
                    and table.map(lambda c: str(c).endswith(f" {MARK}")).any().any()
                )
                blocks.append(
                    Table(
                        table,
                        f"{suite}: {label}; columns are sequence lengths."
                        + (f" {MARK} {BUSY_NOTE}" if marked else ""),
                        index=False,
                    )
                )
    return blocks
