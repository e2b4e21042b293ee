"""scale: the longest sequence one training step fits in a memory budget (the 1M-token claim).

Default and quick grids: the default ReformerLM (d_model 256, 4 heads, 6 layers, d_ff
1024, LSH-4, chunk 64, reversible) with the paper's long-sequence settings: axial
positional embeddings (a learned table would hold 2^20 x 256 weights, plus gradient and
Adam moments) and the feed-forward in 16 chunks, lengths doubling to 2^15. Memory is
taken on the very first step, so the peak includes the gradients and optimizer state a
step allocates for good; time is that of the following steps.

Paper-scale grid (``--paper``): the long-context model, 2 layers with the
feed-forward in 64 chunks, lengths doubling from 2^12 to 2^20; beside it the same model
with 12 layers at 2^18 (is memory flat in depth?) and in bfloat16 autocast at 2^17. Each
point is one training step, measured and timed once (suites.grids.scale_step), since a step at
2^20 takes half an hour on a 2-core CPU. ``--lengths 2^20`` runs a single length.

The per-point memory cap *is* the budget (``--memory-budget-gb``, default 16): a step
that needs more fails as ``oom``.

On CUDA, LSH runs through the Triton kernels; the default CUDA grid is a few minutes'
check of the long-context model at 64K, 256K and 1M (2^20) tokens.
"""

from __future__ import annotations

from typing import Any

from reformer.config import ReformerConfig
from suites.grids._common import lm_point, ok_rows, powers_of_two, preset
from suites.harness.backend import device_backend
from suites.harness.points import Point
from suites.harness.suite import GridContext, Suite

MAX_LENGTH = 2**20  # the "long-context" preset's axial table covers it: one family
# The long-context model of the paper-scale grid: 2 layers, the feed-forward in 64 chunks.
LONG_LAYERS, LONG_FF_CHUNKS = 2, 64
DEPTH_CHECK = (12, 2**18)  # (n_layers, seq_len) of the flat-in-depth point
AUTOCAST_CHECK = ("bfloat16", 2**17)  # (autocast dtype, seq_len) beside float32
SCALE_RUNNER = "suites.grids.scale_step:measure_scale_step"


def _shape(ctx: GridContext) -> tuple[list[int], ReformerConfig, float]:
    """(lengths, model, timeout s)."""
    model = device_backend(
        preset(ctx, "long-context"),
        ctx.device,
    )
    if ctx.mode == "quick":
        return powers_of_two(256, 1024), model.replace(n_layers=2), 120.0
    if ctx.mode == "paper":
        return powers_of_two(2**12, MAX_LENGTH), model, 6 * 3600.0
    if ctx.device == "cuda":
        return powers_of_two(2**16, MAX_LENGTH)[::2], model, 600.0
    return powers_of_two(2**12, 2**15), model, 1800.0


def long_context_point(
    ctx: GridContext,
    model: ReformerConfig,
    seq_len: int,
    *,
    n_layers: int = LONG_LAYERS,
    ff_chunks: int = LONG_FF_CHUNKS,
    batch: int = 1,
    autocast: str | None = None,
    timeout_s: float = 6 * 3600.0,
) -> Point:
    """One training step of the long-context model (``model`` with 2 layers and the FF in
    64 chunks unless told), measured once by the scale runner."""
    config = model.replace(n_layers=n_layers, ff_chunks=ff_chunks)
    point = lm_point(
        ctx,
        "reformer",
        config,
        seq_len=seq_len,
        phase="train_step",
        batch=batch,
        min_run_time=0.0,
        min_samples=1,  # one step of minutes to hours: its memory is what this suite measures
        timeout_s=timeout_s,
    )
    point.runner = SCALE_RUNNER
    point.params["autocast"] = autocast
    return point


def grid(ctx: GridContext) -> list[Point]:
    lengths, model, timeout_s = _shape(ctx)
    if ctx.mode == "paper":
        depth, depth_len = DEPTH_CHECK
        dtype, dtype_len = AUTOCAST_CHECK
        return [long_context_point(ctx, model, length) for length in lengths] + [
            long_context_point(ctx, model, depth_len, n_layers=depth),
            long_context_point(ctx, model, dtype_len, autocast=dtype),
        ]
    if ctx.device == "cuda" and ctx.mode != "quick":
        return [long_context_point(ctx, model, length, timeout_s=timeout_s) for length in lengths]
    return [
        lm_point(
            ctx,
            "reformer",
            model,
            seq_len=length,
            phase="train_step",
            min_run_time=0.0,
            min_samples=1,  # as above: the step is timed once, and marked so in the report
            timeout_s=timeout_s,
            options={"memory_first": True},
        )
        for length in lengths
    ]


def summarize(rows: list[dict[str, Any]], ctx: GridContext) -> list[str]:
    fits = [r for r in ok_rows(rows) if r["peak_mib"] <= ctx.memory_budget_gb * 1024]
    if not fits:
        return [f"no length fit a training step within {ctx.memory_budget_gb:g} GiB"]
    best = max(fits, key=lambda r: r["seq_len"])
    return [
        f"longest training step within {ctx.memory_budget_gb:g} GiB: L={best['seq_len']} "
        f"(peak {best['peak_mib'] / 1024:.2f} GiB via {best['memory_method']}, "
        f"{best['t_median_ms'] / 1e3:.1f} s per step)"
    ]


SUITE = Suite(
    name="scale",
    description="longest L whose training step fits the budget",
    grid=grid,
    summarize=summarize,
    default_max_memory_gb=lambda ctx: None if ctx.mode == "quick" else ctx.memory_budget_gb,
)
