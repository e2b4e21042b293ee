"""hashes: cost of more hash rounds, n_hashes in 1, 2, 4, 8 (one LSH attention layer).

Time, peak memory and bytes saved for backward at fixed lengths, forward + backward.
Local attention (one round in position order, no hash) is the zero-round point: what a
round costs without hashing. Accuracy against n_hashes (paper Table 2) comes from the
quality suite. On CUDA each
point is measured through both LSH backends (torch path and Triton kernels).
"""

from __future__ import annotations

from typing import Any

from reformer.config import ReformerConfig
from suites.grids._common import knob_grid, layer_point, ok_rows, preset
from suites.harness.backend import backend_ablation
from suites.harness.points import Point
from suites.harness.suite import GridContext, Suite

N_HASHES = (1, 2, 4, 8)


def _lengths(ctx: GridContext) -> tuple[list[int], ReformerConfig]:
    if ctx.mode == "quick":
        return [256], preset(ctx)
    if ctx.mode == "paper":
        return [2**12, 2**14, 2**16], preset(ctx)
    return ([2**12, 2**14] if ctx.device == "cuda" else [2**10, 2**12]), preset(ctx)


def grid(ctx: GridContext) -> list[Point]:
    lengths, layer = _lengths(ctx)
    local = [
        layer_point(ctx, config, seq_len=length)
        for length in lengths
        for config in backend_ablation(layer.replace(attention="local"), ctx.device)
    ]
    return knob_grid(ctx, layer, "n_hashes", N_HASHES, lengths) + local


def summarize(rows: list[dict[str, Any]], ctx: GridContext) -> list[str]:
    lines = [
        "cost relative to n_hashes=1 at the same length (0: local attention, no hash):",
        "",
        "| L | n_hashes | time x | peak x | saved x |",
        "|---|---|---|---|---|",
    ]
    for length in sorted({r["seq_len"] for r in rows}):
        mine = {
            0 if r["attention"] == "local" else r["n_hashes"]: r
            for r in ok_rows(rows, seq_len=length)
        }
        base = mine.get(1)
        if base is None:
            continue
        for n_hashes in sorted(mine):
            row = mine[n_hashes]
            lines.append(
                f"| {length} | {n_hashes} | "
                f"{_ratio(row['t_median_ms'], base['t_median_ms'])} | "
                f"{_ratio(row['peak_mib'], base['peak_mib'])} | "
                f"{_ratio(row['saved_mib'], base['saved_mib'])} |"
            )
    return lines


def _ratio(value: float | None, base: float | None) -> str:
    return "-" if not value or not base else f"{value / base:.2f}"


SUITE = Suite(
    name="hashes", description="cost of 1/2/4/8 hash rounds", grid=grid, summarize=summarize
)
