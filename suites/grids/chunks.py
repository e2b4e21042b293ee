"""chunks: cost against chunk length, bucket_size in 32 ... 512 (one LSH-4 attention layer).

Each chunk attends to itself and the previous one, so attention work per query grows with
the chunk length (2·bucket_size keys) while the number of buckets (2·L/bucket_size) falls.
On CUDA each point is measured through the torch path and, for chunks the Triton kernels
take (up to 64), through them too.
"""

from __future__ import annotations

from typing import Any

from reformer.config import ReformerConfig
from suites.grids._common import knob_grid, ok_rows, preset
from suites.harness.points import GridContext, Point, Suite

BUCKET_SIZES = (32, 64, 128, 256, 512)


def _shape(ctx: GridContext) -> tuple[list[int], tuple[int, ...], ReformerConfig]:
    if ctx.mode == "quick":
        return [512], (32, 64), preset(ctx)
    if ctx.mode == "paper":
        return [2**14, 2**16], BUCKET_SIZES, preset(ctx)
    return ([2**14] if ctx.device == "cuda" else [2**12]), BUCKET_SIZES, preset(ctx)


def grid(ctx: GridContext) -> list[Point]:
    lengths, sizes, layer = _shape(ctx)
    return knob_grid(ctx, layer, "bucket_size", sizes, lengths)


def summarize(rows: list[dict[str, Any]], ctx: GridContext) -> list[str]:
    lines = [
        "| L | bucket_size | n_buckets | t (ms) | peak (MiB) | saved (MiB) |",
        "|---|---|---|---|---|---|",
    ]
    for row in sorted(ok_rows(rows), key=lambda r: (r["seq_len"], r["bucket_size"])):
        lines.append(
            f"| {row['seq_len']} | {row['bucket_size']} | {row['n_buckets']} | "
            f"{row['t_median_ms']:.1f} | {row['peak_mib']:.1f} | "
            f"{row['saved_mib']:.1f} |"
        )
    return lines


SUITE = Suite(
    name="chunks",
    description="cost vs chunk size (bucket_size 32..512)",
    grid=grid,
    summarize=summarize,
)
