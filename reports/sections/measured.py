"""Measured numbers: every suite's rows as tables, in paper form.

One line per model and whatever else the suite varies, including the series fields that
are not config (the LSH backend, the decoder's cache, a slice budget), so two series never
share a cell; one column per length, failures spelt out (OOM, timeout, error, skipped)
where a number would be; a time measured under load carries MARK, one from fewer than
MIN_SAMPLES timed calls FEW_MARK.
"""

from __future__ import annotations

import pandas as pd

from reports.context import ReportContext
from reports.load import CONFIG_COLUMNS
from reports.render.document import Block, Table, fmt
from suites.rows.busy import MARK, RULE, row_is_busy
from suites.rows.samples import FEW_MARK, FEW_RULE, row_has_few_samples

# Metrics that load inflates (memory does not depend on it); their cells carry MARK when
# the point was measured under load (suites.rows.busy).
LOAD_SENSITIVE = ("t_median_ms", "tokens_per_s", "tflops_per_s")
# Point fields beside the config that make a series of their own where they vary within a
# model: which backend ran LSH attention, which cache a decoder kept, the torch path's
# slice budget (the chunks suite's second sweep).
SERIES_COLUMNS = ("backend", "cache", "slice_elements")
# What an unset series field means, where it means something: a row records slice_elements
# only where its point moved it off the default budget (docs/results.md).
UNSET = {"slice_elements": "default"}
FEW_NOTE = f"{FEW_MARK} {FEW_RULE}: a median without a spread."
BUSY_NOTE = (
    f"measured with the {RULE}: times inflated, not comparable with an idle run's "
    "(memory is unaffected)."
)
SUITE_METRICS = {
    "memory": (("peak_mib", "peak memory (MiB)"), ("saved_mib", "saved for backward (MiB)")),
    "time": (("t_median_ms", "median time per step (ms)"),),
    "decode": (
        ("t_median_ms", "median time per generated token (ms)"),
        ("peak_mib", "peak memory (MiB)"),
    ),
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
        for c in (*CONFIG_COLUMNS, *SERIES_COLUMNS)
        if c not in ignore
        and c in rows
        # A field a failed point's row lacks (num_threads) does not split a line; one whose
        # absence means a value (UNSET) does.
        and (rows.groupby("model", dropna=False)[c].nunique(dropna=c not in UNSET) > 1).any()
    ]
    if "autocast" in rows and rows["autocast"].notna().any():
        # The scale suite's mixed-precision points are lines of their own (null: none).
        rows = rows.assign(autocast=rows["autocast"].fillna("none"))
        index.append("autocast")
    marked = metric in LOAD_SENSITIVE

    def cell(r: pd.Series) -> str:
        if r["status"] != "ok":
            return _FAILED.get(r["status"], "?")
        row = r.to_dict()
        marks = [MARK] if marked and row_is_busy(row) else []
        marks += [FEW_MARK] if metric == "t_median_ms" and row_has_few_samples(row) else []
        return " ".join([fmt(r[metric]), *marks])

    cells = rows.apply(cell, axis=1)
    labels = rows[index].map(lambda v: "" if pd.isna(v) else fmt(v))
    for column, blank in UNSET.items():
        if column in labels:
            labels[column] = labels[column].replace("", blank)
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
    """Sort 32 < 64 < 128 for numbers written as text; text stays text. A column of numbers
    and words (a budget or "default") sorts the numbers first, then the words."""
    numbers = pd.to_numeric(column, errors="coerce")
    if numbers.notna().all():
        return numbers
    if numbers.notna().any() and (column[numbers.isna()] != "").all():
        return numbers.fillna(float("inf"))
    return column


def measured_blocks(ctx: ReportContext, suites: list[str]) -> list[Block]:
    blocks: list[Block] = []
    for suite in suites:
        if suite == "quality":
            continue  # the quality section tabulates it
        rows = ctx.suite(suite)
        for metric, label in SUITE_METRICS.get(suite, DEFAULT_METRICS):
            if rows.loc[rows["status"] == "ok", metric].notna().any():
                table = paper_form(rows, metric, ctx.palette.order)
                busy = _carries(table, MARK) if metric in LOAD_SENSITIVE else False
                few = _carries(table, FEW_MARK)
                blocks.append(
                    Table(
                        table,
                        f"{suite}: {label}; columns are sequence lengths."
                        + (f" {MARK} {BUSY_NOTE}" if busy else "")
                        + (f" {FEW_NOTE}" if few else ""),
                        index=False,
                    )
                )
    return blocks


def _carries(table: pd.DataFrame, mark: str) -> bool:
    """Whether any cell of ``table`` carries ``mark`` (a cell is a number, then its marks)."""
    return bool(table.map(lambda cell: mark in str(cell).split(" ")[1:]).any().any())
