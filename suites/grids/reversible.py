"""reversible: is memory flat in depth? n_layers x reversible x ff_chunks (paper sec. 3).

One training step of an LSH ReformerLM at a fixed length. With reversible residuals only
the last layer's output is kept for backward, so peak memory and bytes saved for backward
should barely grow with n_layers; without, they grow linearly. Chunking the feed-forward
bounds its d_ff-wide transient. On CUDA, LSH runs through the Triton kernels.
"""

from __future__ import annotations

from typing import Any

from reformer.config import ReformerConfig
from suites.grids._common import lm_point, ok_rows, preset
from suites.harness.backend import device_backend
from suites.harness.points import Point
from suites.harness.suite import GridContext, Suite


def _shape(ctx: GridContext) -> tuple[int, tuple[int, ...], tuple[int, ...], ReformerConfig]:
    """(length, depths, ff_chunks values, model)."""
    if ctx.mode == "quick":
        return 256, (1, 2, 4), (1, 4), preset(ctx)
    if ctx.mode == "paper":
        return 2**14, (1, 2, 4, 8, 12), (1, 8), preset(ctx)
    return (2**14 if ctx.device == "cuda" else 2**12), (1, 2, 4, 8), (1, 8), preset(ctx)


def grid(ctx: GridContext) -> list[Point]:
    length, depths, chunkings, model = _shape(ctx)
    return [
        lm_point(
            ctx,
            "reformer",
            device_backend(
                model.replace(
                    attention="lsh", reversible=reversible, n_layers=n_layers, ff_chunks=ff_chunks
                ),
                ctx.device,
            ),
            seq_len=length,
            phase="train_step",
            min_run_time=0.0 if ctx.mode != "paper" else None,
        )
        for reversible in (True, False)
        for ff_chunks in chunkings
        for n_layers in depths
    ]


def summarize(rows: list[dict[str, Any]], ctx: GridContext) -> list[str]:
    lines = [
        "growth from the shallowest to the deepest model measured:",
        "",
        "| reversible | ff_chunks | layers | peak (MiB) | peak x | saved x |",
        "|---|---|---|---|---|---|",
    ]
    for reversible in (True, False):
        for ff_chunks in sorted({r["ff_chunks"] for r in rows}):
            mine = sorted(
                ok_rows(rows, reversible=reversible, ff_chunks=ff_chunks),
                key=lambda r: r["n_layers"],
            )
            if len(mine) < 2:
                continue
            low, high = mine[0], mine[-1]
            lines.append(
                f"| {reversible} | {ff_chunks} | {low['n_layers']} -> "
                f"{high['n_layers']} | {low['peak_mib']:.0f} -> {high['peak_mib']:.0f}"
                f" | {high['peak_mib'] / low['peak_mib']:.2f} | "
                f"{high['saved_mib'] / low['saved_mib']:.2f} |"
            )
    return lines


SUITE = Suite(
    name="reversible",
    description="n_layers x reversible x ff_chunks: flat memory?",
    grid=grid,
    summarize=summarize,
)
