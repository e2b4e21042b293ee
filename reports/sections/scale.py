"""Figure 7: scale, the longest length whose full training step ran within a memory budget.

This is the paper's headline claim (1M tokens on one 16 GB accelerator). The scale suite
records the lengths it tried; the longest with status ok is the longest *run* for that
model and budget, and the first failure above it, where there is one, says where it
stopped. The suite does not search for the out-of-memory boundary, so without such a
failure a longer length may fit too: the figure and table say "run", not "fits". The
budget is read from a column whose name contains "budget" (e.g. memory_budget_gb), else
from the per-point cap max_memory_gb; without either, a model's rows form one group.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

from reports.context import ReportContext
from reports.render.document import Block, Paragraph, Table, fmt
from reports.render.plotting import Panel, draw_panels, length_label
from reports.sections.ledger import ledger_blocks


def budget_column(rows: pd.DataFrame) -> str | None:
    """A column naming a budget (memory_budget_gb, budget_mib...), else the harness's
    per-point memory cap ``max_memory_gb``; None if no such column has values."""
    names = [c for c in rows.columns if "budget" in c.lower()] + ["max_memory_gb"]
    names = [c for c in names if c in rows.columns and rows[c].notna().any()]
    return names[0] if names else None


def _unit(column: str) -> str:
    suffix = column.rsplit("_", 1)[-1].lower()
    return {"gb": "GiB", "mib": "MiB"}.get(suffix, f"({column})")


def longest_fits(rows: pd.DataFrame) -> pd.DataFrame:
    """Per model (and budget): longest ok length, its peak and time, first failure above it."""
    budget = budget_column(rows)
    keys = ["model", budget] if budget else ["model"]
    found = []
    for key, group in rows.groupby(keys, dropna=False):
        ok = group[group["status"] == "ok"].dropna(subset=["seq_len"])
        best = ok.loc[ok["seq_len"].idxmax()] if not ok.empty else None
        longest = best["seq_len"] if best is not None else 0
        above = group[(group["seq_len"] > longest) & (group["status"] != "ok")]
        stop = above.sort_values("seq_len").iloc[0] if not above.empty else None
        key = key if isinstance(key, tuple) else (key,)
        found.append(
            {
                "model": key[0],
                "budget": f"{fmt(key[1])} {_unit(budget)}" if budget and pd.notna(key[1]) else "",
                "longest L": longest or np.nan,
                "peak (MiB)": best["peak_mib"] if best is not None else np.nan,
                "step (ms)": best["t_median_ms"] if best is not None else np.nan,
                "stopped at": f"{fmt(stop['seq_len'])} ({stop['status']})"
                if stop is not None
                else "",
            }
        )
    return pd.DataFrame(found)


def series_labels(rows: pd.DataFrame) -> pd.Series:
    """One line per model *and* the depth and autocast it ran with, where those vary: the
    12-layer or bfloat16 points of a model are another line, not a zigzag on its own."""
    depths = rows["n_layers"].dropna().unique() if "n_layers" in rows else []
    casts = rows["autocast"].dropna().unique() if "autocast" in rows else []

    def label(row: pd.Series) -> str:
        parts = [str(row["model"])]
        if len(depths) > 1 and pd.notna(row["n_layers"]):
            parts.append(f"{int(row['n_layers'])} layers")
        if len(casts) and pd.notna(row.get("autocast")):
            parts.append(f"{row['autocast']} autocast")
        return ", ".join(parts)

    return rows.apply(label, axis=1) if not rows.empty else pd.Series(dtype=object)


def build_scale(ctx: ReportContext) -> list[Block] | None:
    rows = ctx.suite("scale")
    if rows.empty or not (rows["status"] == "ok").any():
        return None
    rows = rows.assign(series=series_labels(rows))
    fits = longest_fits(rows.assign(model=rows["series"]))
    budget = budget_column(rows)
    # One point per line and length (the newest, where two runs measured it), so a line
    # never doubles back on itself.
    ok = (
        rows[rows["status"] == "ok"]
        .sort_values("timestamp", kind="stable")
        .drop_duplicates(["series", "seq_len"], keep="last")
    )
    failures = rows[rows["status"].isin(["oom", "timeout"])]
    hline = None
    # peak_mib is MiB; a *_gb budget (max_memory_gb) is GiB.
    per_mib = {"mib": 1.0, "gb": 1024.0}.get(budget.lower().rsplit("_", 1)[-1]) if budget else None
    if per_mib and budget and rows[budget].nunique() == 1:
        value = float(rows[budget].dropna().iloc[0])
        hline = (value * per_mib, f"budget {value:g} {_unit(budget)}")
    ctx.palette.ensure(fits["model"].astype(str))
    grid = [
        [
            Panel(
                data=fits,
                x="model",
                y="longest L",
                hue="model",
                title="longest length run",
                custom=_bars(fits, ctx),
            ),
            Panel(
                data=ok[ok["peak_mib"] > 0],
                x="seq_len",
                y="peak_mib",
                hue="series",
                failures=failures,
                title="peak memory of a training step",
                xlabel="sequence length L",
                ylabel="peak memory (MiB)",
                logx=2,
                hline=hline,
            ),
            Panel(
                data=ok[ok["t_median_ms"] > 0],
                x="seq_len",
                y="t_median_ms",
                hue="series",
                title="time of a training step",
                xlabel="sequence length L",
                ylabel="time per step (ms)",
                logx=2,
                marks_few_samples=True,
            ),
        ]
    ]
    table = fits.copy()
    for column in ("longest L", "peak (MiB)", "step (ms)"):
        table[column] = table[column].map(fmt)
    return [
        Paragraph(
            "The longest sequence whose training step ran within the memory budget, of the "
            "lengths tried, with the peak memory and step time at that length. No "
            "out-of-memory boundary is searched: where 'stopped at' is empty, a longer "
            "sequence may fit too. Paper claim: 1M tokens on one 16 GB accelerator."
        ),
        ctx.save(
            draw_panels(grid, ctx.palette),
            "scale",
            "Scale: the longest sequence run within the budget (lengths run, no boundary searched)",
            "Scale: the longest L run per model (left), peak memory and step time "
            "against L of the lengths tried.",
            ctx.commands("scale"),
            ("scale",),
        ),
        Table(table, "Longest length run, per model and budget.", index=False),
        *ledger_blocks(Path(ctx.results_arg)),
    ]


def _bars(fits: pd.DataFrame, ctx: ReportContext):
    """A horizontal bar per line (and budget) on a log2 length axis, each labelled with
    its longest fitting length ("1M"), so lengths that differ by powers of two compare."""

    def draw(ax) -> None:
        labels = [
            f"{m} ({b})" if b else str(m)
            for m, b in zip(fits["model"], fits["budget"], strict=True)
        ]
        colours = [ctx.palette.colours[str(m)] for m in fits["model"]]
        lengths = fits["longest L"].fillna(0).astype(float)
        shortest = max(1.0, 2.0 ** np.floor(np.log2(lengths[lengths > 0].min() / 4)))
        positions = np.arange(len(fits))[::-1]  # the first line on top
        ax.barh(
            positions,
            lengths.where(lengths > 0, shortest) - shortest,
            left=shortest,
            color=colours,
            height=0.6,
        )
        ax.set_xscale("log", base=2)
        for y, length in zip(positions, lengths, strict=True):
            text = length_label(length) if length else "none fits"
            ax.text(max(length, shortest), y, f" {text}", va="center", fontsize="small")
        top = 2.0 ** np.ceil(np.log2(lengths.max() * 4))
        ticks = [2.0**k for k in range(int(np.log2(shortest)), int(np.log2(top)) + 1, 2)]
        ax.set_xlim(shortest, top)
        ax.set_xticks(ticks, [length_label(t) for t in ticks])
        ax.minorticks_off()
        ax.set_yticks(positions, [textwrap.fill(label, 22) for label in labels], fontsize="small")
        ax.set_xlabel("sequence length L")
        ax.grid(axis="y", visible=False)

    return draw
