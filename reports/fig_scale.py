"""Figure 7: scale, the longest length whose full training step fits a memory budget.

This is the paper's headline claim (1M tokens on one 16 GB accelerator). The scale suite
records the lengths it tried; the longest with status ok is the answer for that model and
budget, and the first failure above it says why it stopped. The budget is read from a
column whose name contains "budget" (e.g. memory_budget_gb), else from the per-point cap
max_memory_gb; without either, a model's rows form one group.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from reports.context import ReportContext
from reports.document import Block, Paragraph, Table, fmt
from reports.ledger_table import ledger_blocks
from reports.plotting import Panel, draw_panels


def budget_column(rows: pd.DataFrame) -> str | None:
    """A column naming a budget (memory_budget_gb, budget_mb...), else the harness's
    per-point memory cap ``max_memory_gb``; None if no such column has values."""
    names = [c for c in rows.columns if "budget" in c.lower()] + ["max_memory_gb"]
    names = [c for c in names if c in rows.columns and rows[c].notna().any()]
    return names[0] if names else None


def _unit(column: str) -> str:
    suffix = column.rsplit("_", 1)[-1].lower()
    return {"gb": "GiB", "mb": "MiB"}.get(suffix, f"({column})")


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
                "peak (MiB)": best["peak_mb"] if best is not None else np.nan,
                "step (ms)": best["t_median_ms"] if best is not None else np.nan,
                "stopped at": f"{fmt(stop['seq_len'])} ({stop['status']})"
                if stop is not None
                else "",
            }
        )
    return pd.DataFrame(found)


def build_scale(ctx: ReportContext) -> list[Block] | None:
    rows = ctx.suite("scale")
    if rows.empty or not (rows["status"] == "ok").any():
        return None
    fits = longest_fits(rows)
    budget = budget_column(rows)
    ok = rows[rows["status"] == "ok"]
    failures = rows[rows["status"].isin(["oom", "timeout"])]
    hline = None
    per_mb = {"mb": 1.0, "gb": 1024.0}.get(budget.lower().rsplit("_", 1)[-1]) if budget else None
    if per_mb and rows[budget].nunique() == 1:  # peak_mb is MiB; a GB budget is GiB here
        value = float(rows[budget].dropna().iloc[0])
        hline = (value * per_mb, f"budget {value:g} {_unit(budget)}")
    ctx.palette.ensure(fits["model"].astype(str))
    grid = [
        [
            Panel(
                data=fits,
                x="model",
                y="longest L",
                hue="model",
                title="longest fitting L",
                custom=_bars(fits, ctx),
            ),
            Panel(
                data=ok[ok["peak_mb"] > 0],
                x="seq_len",
                y="peak_mb",
                hue="model",
                failures=failures,
                title="peak memory",
                xlabel="sequence length L",
                ylabel="peak memory (MiB)",
                logx=2,
                hline=hline,
            ),
            Panel(
                data=ok[ok["t_median_ms"] > 0],
                x="seq_len",
                y="t_median_ms",
                hue="model",
                title="training step time",
                xlabel="sequence length L",
                ylabel="time per step (ms)",
                logx=2,
            ),
        ]
    ]
    table = fits.copy()
    for column in ("longest L", "peak (MiB)", "step (ms)"):
        table[column] = table[column].map(fmt)
    return [
        Paragraph(
            "The longest sequence whose training step fits the memory budget, with the "
            "peak memory and step time at that length. Paper claim: 1M tokens on one "
            "16 GB accelerator."
        ),
        ctx.save(
            draw_panels(grid, ctx.palette),
            "scale",
            "Scale: the longest sequence whose training step fits the budget",
            "Scale: longest fitting L per model (left), peak memory and step time "
            "against L of the lengths tried.",
            ctx.commands("scale"),
        ),
        Table(table, "Longest length that fits, per model and budget.", index=False),
        *ledger_blocks(Path(ctx.results_arg)),
    ]


def _bars(fits: pd.DataFrame, ctx: ReportContext):
    """A bar per model (and budget): the longest fitting length, written on the bar."""

    def draw(ax) -> None:
        labels = [
            f"{m}\n{b}" if b else str(m) for m, b in zip(fits["model"], fits["budget"], strict=True)
        ]
        colours = [ctx.palette.colours[str(m)] for m in fits["model"]]
        heights = fits["longest L"].fillna(0)
        bars = ax.bar(range(len(fits)), heights, color=colours)
        ax.bar_label(bars, labels=[fmt(h) if h else "none" for h in heights], fontsize=6)
        ax.set_xticks(range(len(fits)), labels, rotation=30, ha="right")
        ax.set_ylabel("longest L that fits")

    return draw
