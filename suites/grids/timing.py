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

from reformer.config import ReformerConfig
from suites.grids._common import layer_point, ok_rows, powers_of_two, preset
from suites.registry import GridContext, Point, Suite

N_HASHES = (1, 2, 4, 8)
EXACT = ("sdpa", "full")


def _shape(ctx: GridContext) -> tuple[int, list[int], ReformerConfig]:
    """(tokens per batch, lengths, layer)."""
    if ctx.mode == "quick":
        return 512, powers_of_two(128, 512), preset(ctx)
    if ctx.mode == "full" or ctx.device == "cuda":  # the paper's 32K tokens per batch
        return 2**15, powers_of_two(1024, 2**15), preset(ctx)
    return 2**14, powers_of_two(1024, 2**14), preset(ctx)


def grid(ctx: GridContext) -> list[Point]:
    tokens, lengths, layer = _shape(ctx)
    min_run_time = None if ctx.mode != "default" else 1.0
    configs = [layer.replace(attention="lsh", n_hashes=n) for n in N_HASHES]
    configs += [layer.replace(attention=attention) for attention in EXACT]
    return [layer_point(ctx, config, seq_len=length, batch=tokens // length,
                        min_run_time=min_run_time)
            for length in lengths for config in configs]


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
        for attention in EXACT:
            exact = {r["seq_len"]: r["t_median_ms"]
                     for r in ok_rows(rows, model=f"attn-{attention}")}
            if not lsh or not exact:
                continue
            at, first = crossover(lsh, exact)
            lines.append(f"| LSH-{n_hashes} | {attention} | "
                         f"{'never in grid' if at is None else f'{at:.0f}'} | "
                         f"{'-' if first is None else first} |")
    return lines


SUITE = Suite(name="time", description="attention time vs length at fixed tokens (Fig. 5)",
              grid=grid, summarize=summarize)
