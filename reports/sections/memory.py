"""Figure 1: peak memory against length, log-log, one line per model, faceted by phase.

Dashed O(L) and O(L²) guides give the slopes to read against; a cross on the top edge
marks a length where a model ran out of memory (a triangle: timed out). A second figure
draws bytes saved for backward, the deterministic counterpart, when the rows carry it.
"""

from __future__ import annotations

import pandas as pd

from reports.context import ReportContext
from reports.render.document import Block, Paragraph
from reports.render.plotting import Panel, draw_panels, ordered, phase_title, split_variants
from suites.rows.schema import PHASES

# One line is one model and phase across lengths: any other field that differs along it (a
# --quick run's width, a second depth) makes another row of panels, never a jump in a line.
_KEYS = ("model", "phase")


def memory_vs_length(rows: pd.DataFrame, metric: str, label: str) -> list[list[Panel]] | None:
    """Panels of ``metric`` against seq_len: columns = phase, rows = config variants."""
    rows = rows.assign(variant=split_variants(rows, _KEYS, ignore=("n_buckets", "seq_len")))
    ok = rows[(rows["status"] == "ok") & (rows[metric] > 0)]
    if ok.empty:
        return None
    failures = rows[rows["status"].isin(["oom", "timeout"])]
    grid = []
    for variant in ordered(rows["variant"]):
        row = []
        for phase in ordered(rows["phase"], PHASES):

            def cell(frame: pd.DataFrame, v: str = variant, p: str = phase) -> pd.DataFrame:
                return frame[(frame["variant"] == v) & (frame["phase"] == p)]

            if cell(ok).empty:  # nothing measured to draw (a phase saves nothing, or all
                continue  # failed: the tables below spell that out)
            row.append(
                Panel(
                    data=cell(ok),
                    x="seq_len",
                    y=metric,
                    hue="model",
                    failures=cell(failures),
                    title=phase_title(phase, variant),
                    xlabel="sequence length L",
                    ylabel=label,
                    logx=2,
                    guides=True,
                )
            )
        if row:
            grid.append(row)
    return grid or None


def build_memory(ctx: ReportContext) -> list[Block] | None:
    rows = ctx.suite("memory")
    grid = memory_vs_length(rows, "peak_mib", "peak memory (MiB)")
    if grid is None:
        return None
    methods = ", ".join(sorted(rows["memory_method"].dropna().astype(str).unique())) or "n/a"
    commands = ctx.commands("memory")
    blocks: list[Block] = [
        Paragraph(
            "Peak memory of one step against sequence length, per model and phase. "
            f"Memory method: {methods}."
        ),
        ctx.save(
            draw_panels(grid, ctx.palette),
            "memory_peak",
            "Peak memory of one step against sequence length",
            "Peak memory vs L (log-log). Dashed: O(L) and O(L²) guides through the "
            "cheapest point at the shortest length. Crosses on the top edge: out of "
            "memory at that length; triangles: timed out.",
            commands,
            ("memory",),
        ),
    ]
    saved = memory_vs_length(rows, "saved_mib", "saved for backward (MiB)")
    if saved is not None:
        blocks.append(
            ctx.save(
                draw_panels(saved, ctx.palette),
                "memory_saved",
                "Bytes saved for backward against sequence length",
                "Bytes saved for backward vs L (log-log): deterministic and machine-independent "
                "(a phase that saves nothing is not drawn on the log axis).",
                commands,
                ("memory",),
            )
        )
    return blocks
