"""Efficiency beside time: achieved FLOP/s as a fraction of the hardware's peak (MFU).

Rows carry ``tflops_per_s`` (model FLOPs of a step over its median time), ``peak_tflops``
and ``peak_source`` (a GPU's dense datasheet peak for the dtype, or this machine's own
4096² float32 GEMM measured once per run) and ``mfu`` = their ratio (suites.harness.efficiency).
This section draws MFU against length for the time and peers suites and tabulates it,
so a reader sees how far from the hardware each implementation runs.
"""

from __future__ import annotations

import pandas as pd

from reports.context import ReportContext
from reports.render.document import Block, Paragraph, Table, fmt
from reports.render.plotting import Panel, draw_panels, ordered, split_variants
from reports.sections.time import series_labels

SUITES = ("time", "peers")


def build_efficiency(ctx: ReportContext) -> list[Block] | None:
    rows = ctx.rows[ctx.rows["suite"].isin(SUITES) & (ctx.rows["status"] == "ok")]
    if "mfu" not in rows or rows["mfu"].isna().all():
        return None
    rows = rows[rows["mfu"].notna()]
    rows = rows.assign(series=_series(rows), mfu_pct=rows["mfu"] * 100)
    panels, tables = [], []
    for suite in ordered(rows["suite"], SUITES):
        part = rows[rows["suite"] == suite]
        part = part.assign(
            variant=split_variants(
                part, ("series", "phase", "seq_len"), ignore=("batch", "n_buckets")
            )
        )
        for variant in ordered(part["variant"]):
            cell = part[part["variant"] == variant]
            title = ", ".join(t for t in (suite, variant) if t)
            panels.append(
                Panel(
                    data=cell,
                    x="seq_len",
                    y="mfu_pct",
                    hue="series",
                    title=title,
                    xlabel="sequence length L",
                    ylabel="MFU (% of peak)",
                    logx=2,
                )
            )
            tables.append(_table(cell, title))
    blocks: list[Block] = [
        Paragraph(
            "Achieved model FLOP/s as a percentage of the hardware's peak (MFU). "
            "The peak is the GPU's dense datasheet figure for the dtype, or on a CPU "
            "this machine's own 4096² float32 matmul, measured once per run in a child "
            "process like every point's (`peak_source`). FLOPs are model FLOPs "
            "(reformer.flops: matrix products, no recomputation) for our layers, "
            "whatever backend runs them, so MFU ratios are inverse time ratios; peers "
            "are credited with what torch.utils.flop_counter counts in their code. "
            f"Peaks: {_peaks(rows)}."
        ),
        ctx.save(
            draw_panels([panels], ctx.palette),
            "efficiency_vs_length",
            "Efficiency: achieved FLOP/s as a fraction of the hardware's peak",
            "MFU against length (log-log), beside the time figure.",
            ctx.commands(*ordered(rows["suite"], SUITES)),
            tuple(ordered(rows["suite"], SUITES)),
        ),
    ]
    return blocks + tables


def _series(rows: pd.DataFrame) -> pd.Series:
    """Time-figure labels (LSH-n) for the time suite, model names for peers; with the
    backend where our LSH ran through more than one."""
    labels = pd.Series(rows["model"].astype(str), index=rows.index)
    time = rows["suite"] == "time"
    if time.any():
        labels[time] = series_labels(rows[time])
    if "backend" in rows and rows["backend"].dropna().nunique() > 1:
        named = rows["backend"].notna() & ~labels.str.contains(r"\(", regex=True)
        labels[named] = labels[named] + " (" + rows.loc[named, "backend"].astype(str) + ")"
    return labels


def _table(cell: pd.DataFrame, title: str) -> Table:
    pivot = cell.pivot_table(index="series", columns="seq_len", values="mfu_pct", aggfunc="first")
    pivot.columns = [f"L={fmt(length)}" for length in pivot.columns]
    return Table(
        pivot.map(lambda value: fmt(value, 2)),
        f"MFU (% of peak), {title}: rows are series, columns lengths.",
    )


def _peaks(rows: pd.DataFrame) -> str:
    """Per dtype and source: the peak, or its range over the runs drawn (one GEMM each)."""
    parts = []
    for (dtype, source), group in rows.groupby(["dtype", "peak_source"], sort=True):
        low, high = group["peak_tflops"].min(), group["peak_tflops"].max()
        value = (
            f"{fmt(low, 4)} TFLOP/s"
            if low == high
            else (f"{fmt(low, 4)}-{fmt(high, 4)} TFLOP/s over {group['run_id'].nunique()} runs")
        )
        parts.append(f"{dtype}: {value} ({source})")
    return "; ".join(parts)
