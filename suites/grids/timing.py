"""time: attention speed against length at a fixed number of tokens per batch (paper Fig. 5).

One attention layer (d_model 256, 4 heads, causal, chunk 64), forward + backward, batch =
tokens_per_batch / L, for LSH with 1, 2, 4 and 8 hashes against exact attention, both
materialised ("full", what the paper compares against) and fused (SDPA, what users pick
today). LSH time should be flat in L; exact attention grows linearly in L at fixed tokens.
The summary gives the crossover lengths: where LSH-n first beats each exact baseline,
interpolated on log-log axes between the two measured lengths around it.

On CUDA the layer runs in bfloat16 (SDPA's flash kernel) and every LSH point is measured
twice, through the torch path and the Triton kernels (the ``backend`` ablation). The
default CUDA grid is a few minutes' check (LSH-1 and LSH-4 at 4K, 8K and 16K tokens);
``--full`` is the paper's sweep, 1K to 32K with LSH-1/2/4/8.
"""

from __future__ import annotations

import math
from typing import Any

from reformer.config import ReformerConfig
from suites.backend import backend_ablation
from suites.grids._common import (
    CUDA_MIN_RUN_TIME,
    CUDA_SPEED_DTYPE,
    layer_point,
    ok_rows,
    powers_of_two,
    preset,
)
from suites.registry import GridContext, Point, Suite

N_HASHES = (1, 2, 4, 8)
EXACT = ("sdpa", "full")


def _shape(ctx: GridContext) -> tuple[int, list[int], tuple[int, ...], ReformerConfig]:
    """(tokens per batch, lengths, hash rounds, layer)."""
    if ctx.mode == "quick":
        return 512, powers_of_two(128, 512), N_HASHES, preset(ctx)
    if ctx.mode == "full":  # the paper's 32K tokens per batch
        return 2**15, powers_of_two(1024, 2**15), N_HASHES, preset(ctx)
    if ctx.device == "cuda":
        return 2**15, powers_of_two(2**12, 2**14), (1, 4), preset(ctx)
    return 2**14, powers_of_two(1024, 2**14), N_HASHES, preset(ctx)


def grid(ctx: GridContext) -> list[Point]:
    tokens, lengths, rounds, layer = _shape(ctx)
    cuda = ctx.device == "cuda"
    dtype = CUDA_SPEED_DTYPE if cuda else "float32"
    min_run_time = None if ctx.mode != "default" else CUDA_MIN_RUN_TIME if cuda else 1.0
    configs = [variant for n in rounds for variant in backend_ablation(
        layer.replace(attention="lsh", n_hashes=n), ctx.device, dtype)]
    configs += [layer.replace(attention=attention) for attention in EXACT]
    return [layer_point(ctx, config, seq_len=length, batch=tokens // length, dtype=dtype,
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
    # The backend ablation (CUDA) gives each LSH-n one line per backend; rows without it
    # (CPU, or older rows that predate the field) are one line.
    found = {r.get("backend") for r in ok_rows(rows, model="attn-lsh")}
    backends = sorted(b for b in found if b) if "triton" in found else [None]
    for n_hashes in N_HASHES:
        for backend in backends:
            _crossover_lines(lines, rows, n_hashes, backend)
    return lines


def _crossover_lines(lines: list[str], rows: list[dict[str, Any]], n_hashes: int,
                     backend: str | None) -> None:
    match = {} if backend is None else {"backend": backend}
    lsh = {r["seq_len"]: r["t_median_ms"]
           for r in ok_rows(rows, model="attn-lsh", n_hashes=n_hashes, **match)}
    label = f"LSH-{n_hashes}" + (f" ({backend})" if backend else "")
    for attention in EXACT:
        exact = {r["seq_len"]: r["t_median_ms"]
                 for r in ok_rows(rows, model=f"attn-{attention}")}
        if not lsh or not exact:
            continue
        at, first = crossover(lsh, exact)
        lines.append(f"| {label} | {attention} | "
                     f"{'never in grid' if at is None else f'{at:.0f}'} | "
                     f"{'-' if first is None else first} |")


SUITE = Suite(name="time", description="attention time vs length at fixed tokens (Fig. 5)",
              grid=grid, summarize=summarize)
