"""time: attention speed against length at a fixed number of tokens per batch (paper Fig. 5).

One attention layer (d_model 256, 4 heads, causal, chunk 64), forward + backward, batch =
tokens_per_batch / L, for LSH with 1, 2, 4 and 8 hashes against exact attention, both
materialised ("full", what the paper compares against) and fused (SDPA, what users pick
today). LSH time should be flat in L; exact attention grows linearly in L at fixed tokens.
The summary gives the crossover lengths: where LSH-n first beats each exact baseline,
interpolated on log-log axes between the two measured lengths around it.
"""

from __future__ import annotations

import math
from typing import Any

from suites.grids._common import layer_point, ok_rows, powers_of_two
from suites.registry import GridContext, Point, Suite

N_HASHES = (1, 2, 4, 8)
EXACT = ("attn-sdpa", "attn-full")


def _shape(ctx: GridContext) -> tuple[int, list[int], dict[str, int]]:
    """(tokens per batch, lengths, layer size)."""
    if ctx.mode == "quick":
        return 512, powers_of_two(128, 512), dict(d_model=32, n_heads=2, bucket_size=16)
    if ctx.mode == "full":  # the paper's 32K tokens per batch
        return 2**15, powers_of_two(1024, 2**15), {}
    if ctx.device == "cuda":
        return 2**15, powers_of_two(1024, 2**15), {}
    return 2**14, powers_of_two(1024, 2**14), {}


def grid(ctx: GridContext) -> list[Point]:
    tokens, lengths, size = _shape(ctx)
    min_run_time = None if ctx.mode != "default" else 1.0
    points = []
    for length in lengths:
        batch = tokens // length
        for n_hashes in N_HASHES:
            points.append(layer_point(ctx, model="attn-lsh", seq_len=length, batch=batch,
                                      n_hashes=n_hashes, min_run_time=min_run_time, **size))
        for model in EXACT:
            points.append(layer_point(ctx, model=model, seq_len=length, batch=batch,
                                      min_run_time=min_run_time, **size))
    return points


def crossover(lsh: dict[int, float], exact: dict[int, float]) -> tuple[float | None, int | None]:
    """(interpolated length where LSH becomes faster, first measured length where it is).

    Lengths are those both have; the ratio t_lsh / t_exact is interpolated linearly in
    log-log between the last length where LSH is slower and the first where it is faster.
    (None, None) if LSH is never faster; (L0, L0) if it is faster from the first length.
    """
    common = sorted(set(lsh) & set(exact))
    previous = None
    for length in common:
        ratio = lsh[length] / exact[length]
        if ratio < 1.0:
            if previous is None:
                return float(length), length
            prev_length, prev_ratio = previous
            x0, x1 = math.log(prev_length), math.log(length)
            y0, y1 = math.log(prev_ratio), math.log(ratio)
            return math.exp(x0 + (0.0 - y0) * (x1 - x0) / (y1 - y0)), length
        previous = (length, ratio)
    return None, None


def summarize(rows: list[dict[str, Any]], ctx: GridContext) -> list[str]:
    lines = ["crossover lengths (LSH-n fwd+bwd faster than exact attention, same tokens/batch):",
             "", "| LSH | vs | crossover L (log-log interp.) | first faster at L |",
             "|---|---|---|---|"]
    for n_hashes in N_HASHES:
        lsh = {r["seq_len"]: r["t_median_ms"]
               for r in ok_rows(rows, model="attn-lsh", n_hashes=n_hashes)}
        for model in EXACT:
            exact = {r["seq_len"]: r["t_median_ms"] for r in ok_rows(rows, model=model)}
            if not lsh or not exact:
                continue
            at, first = crossover(lsh, exact)
            label = model.removeprefix("attn-")
            lines.append(f"| LSH-{n_hashes} | {label} | "
                         f"{'never in grid' if at is None else f'{at:.0f}'} | "
                         f"{'-' if first is None else first} |")
    return lines


SUITE = Suite(name="time", description="attention time vs length at fixed tokens (Fig. 5)",
              grid=grid, summarize=summarize)
