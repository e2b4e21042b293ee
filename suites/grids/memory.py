"""memory: peak memory against length, and where each model runs out.

Models: TransformerLM with materialised ("full") and fused ("sdpa") attention, and
ReformerLM with LSH on/off x reversible on/off (FF unchunked throughout, so the 2x2 is
clean; chunking is the reversible suite's subject). Passes: inference forward and one
training step (forward, backward, AdamW). Lengths double from 1K until the grid's end; a
model that runs out of the per-point memory budget is recorded as ``oom`` there and its
longer lengths as ``skipped``.

Default on CPU: 2 layers (d_model 256, 4 heads, d_ff 1024) under a 4 GiB budget per point,
so the whole suite finishes in minutes and the materialised Transformer's L^2 scores run
out of the budget inside the grid while the Reformer does not. ``--full`` is the 6-layer
default model under 16 GiB (the paper's accelerator) up to 64K on CPU, 1M on CUDA.

On CUDA (16 GiB per point, LSH through the Triton kernels) the default grid is a few
minutes' check: the 6-layer model's training step at 4K, 16K and 64K.
"""

from __future__ import annotations

from typing import Any

from reformer.config import ReformerConfig
from suites.backend import device_backend
from suites.grids._common import lm_point, powers_of_two, preset
from suites.registry import GridContext, Point, Suite

MODELS = (  # (family, attention, reversible)
    ("transformer", "full", False), ("transformer", "sdpa", False),
    ("reformer", "full", False), ("reformer", "full", True),
    ("reformer", "lsh", False), ("reformer", "lsh", True),
)
PASSES = ("fwd", "train_step")


def _shape(ctx: GridContext) -> tuple[ReformerConfig, list[int], tuple[str, ...]]:
    """Model (FF unchunked, the preset's), lengths and passes for the device and mode."""
    if ctx.mode == "quick":
        return preset(ctx, n_layers=1), powers_of_two(128, 512), PASSES
    if ctx.mode == "full":
        high = 2**20 if ctx.device == "cuda" else 2**16
        return preset(ctx), powers_of_two(1024, high), PASSES
    if ctx.device == "cuda":
        return preset(ctx, n_layers=6), [2**12, 2**14, 2**16], ("train_step",)
    return preset(ctx, n_layers=2), powers_of_two(1024, 2**14), PASSES


def grid(ctx: GridContext) -> list[Point]:
    config, lengths, passes = _shape(ctx)
    return [
        lm_point(ctx, family,
                 device_backend(config.replace(attention=attention, reversible=reversible),
                                ctx.device),
                 seq_len=length, pass_name=pass_name,
                 min_run_time=0.0 if ctx.mode != "full" else None)
        for length in lengths
        for family, attention, reversible in MODELS
        for pass_name in passes
    ]


def budget_gb(ctx: GridContext) -> float | None:
    if ctx.mode == "quick":
        return None
    if ctx.mode == "default" and ctx.device == "cpu":
        return 4.0
    return 16.0


def summarize(rows: list[dict[str, Any]], ctx: GridContext) -> list[str]:
    """Per model and pass: the longest length that ran and where it ran out, if it did."""
    lines = ["| model | pass | longest ok L | peak there (MiB) | first failure |",
             "|---|---|---|---|---|"]
    keys = sorted({(r["model"], r["pass"]) for r in rows}, key=str)
    for model, pass_name in keys:
        mine = [r for r in rows if (r["model"], r["pass"]) == (model, pass_name)]
        ok = [r for r in mine if r["status"] == "ok"]
        failed = sorted((r for r in mine if r["status"] in ("oom", "timeout", "error")),
                        key=lambda r: r["seq_len"])
        best = max(ok, key=lambda r: r["seq_len"]) if ok else None
        first = f"{failed[0]['status']} at L={failed[0]['seq_len']}" if failed else "none"
        lines.append(f"| {model} | {pass_name} | {best['seq_len'] if best else '-'} | "
                     f"{best['peak_mb']:.0f} | {first} |" if best else
                     f"| {model} | {pass_name} | - | - | {first} |")
    return lines


SUITE = Suite(name="memory", description="peak memory vs length; where each model runs out",
              grid=grid, summarize=summarize, default_max_memory_gb=budget_gb)
