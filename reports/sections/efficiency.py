"""Efficiency beside time: achieved FLOP/s as a fraction of the hardware's peak (MFU).

Rows carry ``tflops_per_s`` (model FLOPs of a step over its median time), ``peak_tflops``
and ``peak_source`` (a GPU's dense datasheet peak for the dtype, or this machine's own
4096² float32 GEMM measured once per run) and ``mfu`` = their ratio (suites.harness.efficiency).
A measured peak moves from run to run (0.09 to 0.18 TFLOP/s on one 2-core machine), so
each run's own ``mfu`` would put two runs' points on different scales. This section
divides every row by one peak per report instead: per dtype and source, the median of the
peaks of the runs the report draws, and says which. It draws MFU against length for the
time and peers suites and tabulates it; an MFU above 100% is impossible, so such a point
is drawn as invalid (its FLOP count or the peak is wrong), never as a value.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from reports.context import ReportContext
from reports.render.document import Block, Paragraph, Table, fmt
from reports.render.plotting import Panel, draw_panels, ordered, split_variants
from reports.sections.time import series_labels

SUITES = ("time", "peers")
INVALID = "invalid"


def build_efficiency(ctx: ReportContext) -> list[Block] | None:
    peaks = report_peaks(ctx.rows)
    rows = ctx.rows[ctx.rows["suite"].isin(SUITES) & (ctx.rows["status"] == "ok")]
    rows = rows.assign(mfu_pct=mfu_percent(rows, peaks))
    rows = rows[rows["mfu_pct"].notna()]
    if rows.empty:
        return None
    rows = rows.assign(series=_series(rows))
    invalid = rows["mfu_pct"] > 100
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
                    data=cell[cell["mfu_pct"] <= 100],
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
            f"One peak per report, whatever each run measured: {_stated(peaks)}."
            + (
                f" {int(invalid.sum())} points read above 100% of that peak, which no "
                "step can reach (the FLOP count or the peak is wrong there): they are "
                "drawn as invalid, not as values."
                if invalid.any()
                else ""
            )
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
        pivot.map(lambda value: INVALID if value > 100 else fmt(value, 2)),
        f"MFU (% of the report's peak), {title}: rows are series, columns lengths"
        + (f"; {INVALID}: above 100%, not a measurement." if (pivot > 100).any().any() else "."),
    )


@dataclass(frozen=True)
class Peak:
    """The one peak a report divides by, for one dtype and peak source."""

    tflops: float  # the median over runs
    runs: int  # how many runs measured (or stated) one
    low: float
    high: float


def report_peaks(rows: pd.DataFrame) -> dict[tuple[str, str], Peak]:
    """Per (dtype, peak_source): the median of the runs' peaks (one per run: the median of
    its rows', which share one measurement), over every run of the report's rows."""
    known = rows.dropna(subset=["peak_tflops", "peak_source"])
    known = known[known["peak_tflops"] > 0]
    peaks = {}
    for (dtype, source), group in known.groupby(["dtype", "peak_source"], sort=True):
        per_run = group.groupby(group["run_id"].astype(str))["peak_tflops"].median()
        peaks[(str(dtype), str(source))] = Peak(
            tflops=float(per_run.median()),
            runs=len(per_run),
            low=float(per_run.min()),
            high=float(per_run.max()),
        )
    return peaks


def mfu_percent(rows: pd.DataFrame, peaks: dict[tuple[str, str], Peak]) -> pd.Series:
    """Each row's achieved TFLOP/s as a percentage of the report's peak for its dtype and
    source; NaN where the row has no FLOP rate or no peak."""
    peak = [
        peaks[(str(d), str(s))].tflops if (str(d), str(s)) in peaks else float("nan")
        for d, s in zip(rows["dtype"], rows["peak_source"], strict=True)
    ]
    rate = pd.to_numeric(rows["tflops_per_s"], errors="coerce")
    return 100 * rate / pd.Series(peak, index=rows.index, dtype=float)


def _stated(peaks: dict[tuple[str, str], Peak]) -> str:
    parts = []
    for (dtype, source), peak in peaks.items():
        spread = (
            f"; the median of {peak.runs} runs' own, {peak.low:.3g}-{peak.high:.3g}"
            if peak.runs > 1 and peak.low != peak.high
            else ""
        )
        parts.append(f"{dtype}: {peak.tflops:.4g} TFLOP/s ({source}{spread})")
    return "; ".join(parts)
