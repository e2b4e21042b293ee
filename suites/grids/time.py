"""time: attention speed against length at a fixed number of tokens per batch (paper Fig. 5).

One attention layer (d_model 256, 4 heads, causal, chunk 64), forward + backward, batch =
tokens_per_batch / L, for LSH with 1, 2, 4 and 8 hashes against exact attention, both
materialised ("full", what the paper compares against) and fused (SDPA, what users pick
today), and local attention (LSH's chunks in position order: one round, no hash, no sort),
the floor that says what the hashing itself costs. LSH and local time should be flat in
L; exact attention grows linearly in L at fixed tokens.
The summary gives the crossover lengths: every length where LSH-n and an exact baseline
trade places, interpolated on log-log axes (suites.rows.crossover, as in the report).

On CUDA the layer runs in bfloat16 (SDPA's flash kernel) and every LSH point is measured
twice, through the torch path and the Triton kernels (the ``backend`` ablation). The
default CUDA grid is a few minutes' check (LSH-1 and LSH-4 at 4K, 8K and 16K tokens);
``--paper`` is the paper's sweep, 1K to 32K with LSH-1/2/4/8.
"""

from __future__ import annotations

from typing import Any

from reformer.config import ReformerConfig
from suites.grids._common import (
    CUDA_MIN_RUN_TIME,
    CUDA_SPEED_DTYPE,
    layer_point,
    ok_rows,
    powers_of_two,
    preset,
)
from suites.harness.backend import backend_ablation
from suites.harness.points import Point
from suites.harness.suite import GridContext, Suite
from suites.rows.crossover import crossovers_between
from suites.rows.names import label, lsh_name

N_HASHES = (1, 2, 4, 8)
EXACT = ("sdpa", "full")
LOCAL = "local"


def _shape(ctx: GridContext) -> tuple[int, list[int], tuple[int, ...], ReformerConfig]:
    """(tokens per batch, lengths, hash rounds, layer)."""
    if ctx.mode == "quick":
        return 512, powers_of_two(128, 512), N_HASHES, preset(ctx)
    if ctx.mode == "paper":  # the paper's 32K tokens per batch
        return 2**15, powers_of_two(1024, 2**15), N_HASHES, preset(ctx)
    if ctx.device == "cuda":
        return 2**15, powers_of_two(2**12, 2**14), (1, 4), preset(ctx)
    return 2**14, powers_of_two(1024, 2**14), N_HASHES, preset(ctx)


def grid(ctx: GridContext) -> list[Point]:
    tokens, lengths, rounds, layer = _shape(ctx)
    cuda = ctx.device == "cuda"
    dtype = CUDA_SPEED_DTYPE if cuda else "float32"
    min_run_time = None if ctx.mode != "default" else CUDA_MIN_RUN_TIME if cuda else 1.0
    configs = [
        variant
        for n in rounds
        for variant in backend_ablation(
            layer.replace(attention="lsh", n_hashes=n), ctx.device, dtype
        )
    ]
    configs += backend_ablation(layer.replace(attention=LOCAL), ctx.device, dtype)
    configs += [layer.replace(attention=attention) for attention in EXACT]
    return [
        layer_point(
            ctx,
            config,
            seq_len=length,
            batch=tokens // length,
            dtype=dtype,
            min_run_time=min_run_time,
        )
        for length in lengths
        for config in configs
    ]


def summarize(rows: list[dict[str, Any]], ctx: GridContext) -> list[str]:
    lines = [
        "crossover lengths (LSH-n fwd+bwd against exact attention, same tokens/batch):",
        "",
        "| LSH | vs | crossover L (log-log interp.) | cheaper above |",
        "|---|---|---|---|",
    ]
    # The backend ablation (CUDA) gives each LSH-n one line per backend; rows without it
    # (CPU, or older rows that predate the field) are one line.
    found = {r.get("backend") for r in ok_rows(rows, model="attn-lsh")}
    backends = sorted(b for b in found if b) if "triton" in found else [None]
    for n_hashes in N_HASHES:
        for backend in backends:
            _crossover_lines(lines, rows, n_hashes, backend)
    return lines + _hashing_cost_lines(rows)


def _hashing_cost_lines(rows: list[dict[str, Any]]) -> list[str]:
    """LSH-1 over local attention at each length: what the hash and the sort cost, the
    rest of one round being the same."""
    local = {r["seq_len"]: r["t_median_ms"] for r in ok_rows(rows, model=f"attn-{LOCAL}")}
    lsh = {r["seq_len"]: r["t_median_ms"] for r in ok_rows(rows, model="attn-lsh", n_hashes=1)}
    common = sorted(set(local) & set(lsh))
    if not common:
        return []
    ratios = ", ".join(f"{length}: {lsh[length] / local[length]:.2f}x" for length in common)
    return ["", f"LSH-1 time over local attention (the hash and the sort), by L: {ratios}"]


def _crossover_lines(
    lines: list[str], rows: list[dict[str, Any]], n_hashes: int, backend: str | None
) -> None:
    match = {} if backend is None else {"backend": backend}
    lsh = {
        r["seq_len"]: r["t_median_ms"]
        for r in ok_rows(rows, model="attn-lsh", n_hashes=n_hashes, **match)
    }
    name = label(lsh_name(n_hashes)) + (f" ({backend})" if backend else "")
    for attention in EXACT:
        exact = {r["seq_len"]: r["t_median_ms"] for r in ok_rows(rows, model=f"attn-{attention}")}
        if not lsh or not exact:
            continue
        crossings = crossovers_between(lsh, exact)
        if not crossings:
            common = sorted(set(lsh) & set(exact))
            cheaper = name if common and lsh[common[0]] < exact[common[0]] else attention
            lines.append(f"| {name} | {attention} | none in grid | {cheaper} throughout |")
        for crossing in crossings:
            cheaper = name if crossing.lower_after == "a" else attention
            lines.append(f"| {name} | {attention} | {crossing.seq_len:.0f} | {cheaper} |")


SUITE = Suite(
    name="time",
    description="attention time vs length at fixed tokens (Fig. 5)",
    grid=grid,
    summarize=summarize,
)
