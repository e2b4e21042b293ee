"""time: attention speed against length at a fixed number of tokens per batch (paper Fig. 5).

One attention layer (d_model 256, 4 heads, causal, chunk 64), forward + backward, batch =
tokens_per_batch / L, for LSH with 1, 2, 4 and 8 hashes against exact attention, both
materialised ("full", what the paper compares against) and fused (SDPA, what users pick
today). LSH time should be flat in L; exact attention grows linearly in L at fixed tokens.
The summary gives the crossover lengths: every length where LSH-n and an exact baseline
trade places, interpolated on log-log axes (suites.crossover, as in the report).
"""

from __future__ import annotations

from typing import Any

from reformer.config import ReformerConfig
from suites.crossover import crossovers_between
from suites.grids._common import layer_point, ok_rows, powers_of_two, preset
from suites.names import label, lsh_name
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


def summarize(rows: list[dict[str, Any]], ctx: GridContext) -> list[str]:
    lines = ["crossover lengths (LSH-n fwd+bwd against exact attention, same tokens/batch):",
             "", "| LSH | vs | crossover L (log-log interp.) | cheaper above |",
             "|---|---|---|---|"]
    for n_hashes in N_HASHES:
        lsh = {r["seq_len"]: r["t_median_ms"]
               for r in ok_rows(rows, model="attn-lsh", n_hashes=n_hashes)}
        name = label(lsh_name(n_hashes))
        for attention in EXACT:
            exact = {r["seq_len"]: r["t_median_ms"]
                     for r in ok_rows(rows, model=f"attn-{attention}")}
            if not lsh or not exact:
                continue
            crossings = crossovers_between(lsh, exact)
            if not crossings:
                lines.append(f"| {name} | {attention} | never in grid | - |")
            for crossing in crossings:
                cheaper = name if crossing.lower_after == "a" else attention
                lines.append(f"| {name} | {attention} | {crossing.seq_len:.0f} | {cheaper} |")
    return lines


SUITE = Suite(name="time", description="attention time vs length at fixed tokens (Fig. 5)",
              grid=grid, summarize=summarize)
