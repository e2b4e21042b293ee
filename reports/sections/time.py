"""Figure 2: time per step against length for LSH-1/2/4/8 against full and SDPA (paper Fig. 5).

The suite keeps tokens per batch fixed, so full attention grows ~L while LSH stays flat.
Where an LSH curve meets a full or SDPA curve, the crossover length is found by
interpolation on log L (suites.rows.crossover, which the time suite's summary uses too), marked
on the figure and listed in a table.
"""

from __future__ import annotations

import pandas as pd

from reports.context import ReportContext
from reports.render.document import Block, Note, Paragraph, Table, fmt
from reports.render.palette import lsh_label
from reports.render.plotting import Panel, draw_panels, ordered, phase_title, split_variants
from suites.rows.crossover import crossovers_between
from suites.rows.schema import PHASES

_KEYS = ("series", "phase")  # a line; other fields that differ along it split the panels


def series_labels(rows: pd.DataFrame) -> pd.Series:
    """'LSH-n' for LSH rows (prefixed by the model if several LSH models; followed by the
    backend, e.g. 'LSH-4 (triton)', if several backends ran them), 'Local' for local
    attention (with its backend likewise), else the model."""
    lsh = rows["attention"] == "lsh"
    several = rows.loc[lsh, "model"].nunique() > 1
    backends = "backend" in rows and rows.loc[lsh, "backend"].dropna().nunique() > 1

    def label(row: pd.Series) -> str:
        if row["attention"] == "local":
            name = "Local"
            return f"{name} ({row['backend']})" if backends and pd.notna(row["backend"]) else name
        if row["attention"] != "lsh" or pd.isna(row["n_hashes"]):
            return str(row["model"])
        name = lsh_label(row["n_hashes"])
        name = f"{row['model']} {name}" if several else name
        return f"{name} ({row['backend']})" if backends and pd.notna(row["backend"]) else name

    return rows.apply(label, axis=1) if not rows.empty else pd.Series(dtype=object)


def _lsh_pairs(cell: pd.DataFrame):
    """(LSH series, non-LSH series, its {L: ms}, the other's) for every such pair of one
    panel."""
    curves = {
        name: dict(zip(part["seq_len"], part["t_median_ms"], strict=True))
        for name, part in cell.groupby("series")
    }
    lsh = set(cell.loc[cell["attention"] == "lsh", "series"])
    for name in sorted(lsh):
        for other in sorted(set(curves) - lsh):
            yield name, other, curves[name], curves[other]


def crossover_rows(cell: pd.DataFrame, facet: str) -> list[dict]:
    """Every crossing of an LSH series with a non-LSH series in one panel."""
    found = []
    for name, other, mine, theirs in _lsh_pairs(cell):
        for crossing in crossovers_between(mine, theirs):
            found.append(
                {
                    "panel": facet,
                    "LSH series": name,
                    "against": other,
                    "crossover L": crossing.seq_len,
                    "ms at crossover": crossing.cost,
                    "cheaper above": name if crossing.lower_after == "a" else other,
                }
            )
    return found


def uncrossed_rows(cell: pd.DataFrame, facet: str) -> list[dict]:
    """Pairs of an LSH series and a non-LSH series that never cross on their shared
    lengths: which one is cheaper throughout (as the time suite's summary says it)."""
    found = []
    for name, other, mine, theirs in _lsh_pairs(cell):
        shared = sorted(set(mine) & set(theirs))
        if shared and not crossovers_between(mine, theirs):
            cheaper = name if mine[shared[0]] < theirs[shared[0]] else other
            found.append(
                {
                    "panel": facet,
                    "LSH series": name,
                    "against": other,
                    "crossover L": None,
                    "ms at crossover": None,
                    "cheaper above": f"{cheaper} throughout",
                }
            )
    return found


def build_time(ctx: ReportContext) -> list[Block] | None:
    rows = ctx.suite("time")
    rows = rows.assign(series=series_labels(rows))
    # Batch shrinks as L grows (fixed tokens per batch), so it is not a variant.
    rows = rows.assign(
        variant=split_variants(
            rows,
            (*_KEYS, "attention", "n_hashes", "model"),
            ignore=("seq_len", "batch", "n_buckets"),
        )
    )
    ok = rows[(rows["status"] == "ok") & (rows["t_median_ms"] > 0)]
    if ok.empty:
        return None
    ok = ok.assign(half_iqr=ok["t_iqr_ms"] / 2)
    failures = rows[rows["status"].isin(["oom", "timeout"])]
    grid, crossings = [], []
    for variant in ordered(rows["variant"]):
        panels = []
        for phase in ordered(rows["phase"], PHASES):
            cell = ok[(ok["variant"] == variant) & (ok["phase"] == phase)]
            fail = failures[(failures["variant"] == variant) & (failures["phase"] == phase)]
            if cell.empty and fail.empty:
                continue
            facet = phase_title(phase, variant)
            found = crossover_rows(cell, facet)
            crossings.extend(found + uncrossed_rows(cell, facet))
            panels.append(
                Panel(
                    data=cell,
                    x="seq_len",
                    y="t_median_ms",
                    hue="series",
                    failures=fail,
                    title=facet,
                    xlabel="sequence length L",
                    ylabel="time per step (ms)",
                    logx=2,
                    yerr="half_iqr",
                    annotate=_annotator(found),
                    marks_few_samples=True,
                )
            )
        if panels:
            grid.append(panels)
    if not grid:
        return None
    tokens = (ok["batch"] * ok["seq_len"]).dropna().unique()
    per_batch = ", ".join(fmt(t) for t in sorted(tokens)) or "n/a"
    blocks: list[Block] = [
        Paragraph(
            f"Time per step against length at fixed tokens per batch ({per_batch}); "
            "medians of torch.utils.benchmark samples, bars one IQR wide centred on "
            "the median (the harness stores the IQR width, not its ends)."
        ),
        ctx.save(
            draw_panels(grid, ctx.palette),
            "time_vs_length",
            "Time per step against sequence length (fixed tokens per batch)",
            "Time vs L (log-log) in the style of Reformer Fig. 5. Rings: crossover "
            "lengths, interpolated on log L.",
            ctx.commands("time"),
            ("time",),
        ),
    ]
    if crossings:
        table = pd.DataFrame(crossings)
        for column in ("crossover L", "ms at crossover"):
            table[column] = table[column].map(lambda v: "none in grid" if pd.isna(v) else fmt(v))
        blocks.append(
            Table(
                table,
                "Crossover lengths: where an LSH curve meets full or SDPA "
                "attention (log-log interpolation between measured lengths); 'none in "
                "grid' where one is cheaper at every measured length.",
                index=False,
            )
        )
    else:
        blocks.append(Note("No LSH curve crosses a full or SDPA curve in the measured range."))
    return blocks


def _annotator(found: list[dict]):
    def annotate(ax) -> None:
        for crossing in found:
            x, y = crossing["crossover L"], crossing["ms at crossover"]
            ax.plot(
                [x],
                [y],
                marker="o",
                markersize=9,
                markerfacecolor="none",
                markeredgecolor="black",
                linestyle="none",
                zorder=6,
            )
            ax.annotate(f"{x:.0f}", (x, y), textcoords="offset points", xytext=(4, -10), fontsize=6)

    return annotate
