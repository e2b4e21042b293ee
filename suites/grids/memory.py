"""memory: peak memory against length and depth, and where each model runs out.

The main job. One training step (forward, backward, AdamW) of five models: TransformerLM
with materialised ("full") and fused ("sdpa") attention, ReformerLM with LSH attention,
reversible residuals off and on, and the reversible ReformerLM with local attention (the
cost of one round without the hash; FF unchunked throughout; chunking is the reversible
suite's subject). Each at two depths, at lengths doubling from 1K, under a per-point memory
budget: a model that runs out is recorded as ``oom`` there and its longer lengths (at that
depth) as ``skipped``.

Default on CPU: 2 and 6 layers (d_model 256, 4 heads, d_ff 1024) up to 16K under 4 GiB per
point, about 10 minutes on a 2-core CPU. The regime where the Reformer pays shows within it:
materialised attention runs out of the budget (sooner at depth 6), fused SDPA and the
non-reversible LSH model grow with depth x length, and the reversible LSH model's peak
barely moves with depth. ``--paper`` is the 6-layer default model, all six models (LSH and
full attention, reversible on/off) and the inference forward too, under 16 GiB (the paper's
accelerator), up to 64K on CPU and 1M on CUDA. ``--quick`` is a smoke run of tiny models
on one thread; its numbers mean nothing.

On CUDA (16 GiB per point, LSH through the Triton kernels) the default grid is a few
minutes' check: the 6-layer model's training step at 4K, 16K and 64K.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reformer.config import ReformerConfig
from suites.grids._common import lm_point, powers_of_two, preset
from suites.harness.backend import device_backend
from suites.harness.points import Point
from suites.harness.process_memory import MEMORY_BUDGET_GIB
from suites.harness.suite import GridContext, Suite

MAIN_MODELS = (  # (family, attention, reversible)
    ("transformer", "full", False),
    ("transformer", "sdpa", False),
    ("reformer", "lsh", False),
    ("reformer", "lsh", True),
    # The control for hashing: the reversible Reformer with local attention (one round).
    ("reformer", "local", True),
)
# --paper adds reversibility with exact attention, to separate the two ideas.
PAPER_MODELS = (*MAIN_MODELS, ("reformer", "full", False), ("reformer", "full", True))


@dataclass(frozen=True)
class Shape:
    config: ReformerConfig  # the model at the first depth
    depths: tuple[int, ...]
    lengths: list[int]
    models: tuple[tuple[str, str, bool], ...]
    phases: tuple[str, ...]


def _shape(ctx: GridContext) -> Shape:
    """Models, depths, lengths and phases for the device and mode."""
    if ctx.mode == "quick":
        return Shape(preset(ctx), (1, 2), powers_of_two(128, 256), MAIN_MODELS, ("train_step",))
    if ctx.mode == "paper":
        high = 2**20 if ctx.device == "cuda" else 2**16
        config = preset(ctx)
        return Shape(
            config,
            (config.n_layers,),
            powers_of_two(1024, high),
            PAPER_MODELS,
            ("fwd", "train_step"),
        )
    if ctx.device == "cuda":
        return Shape(preset(ctx), (6,), [2**12, 2**14, 2**16], MAIN_MODELS, ("train_step",))
    return Shape(preset(ctx), (2, 6), powers_of_two(1024, 2**14), MAIN_MODELS, ("train_step",))


def grid(ctx: GridContext) -> list[Point]:
    shape = _shape(ctx)
    return [
        lm_point(
            ctx,
            family,
            device_backend(
                shape.config.replace(attention=attention, reversible=reversible, n_layers=n_layers),
                ctx.device,
            ),
            seq_len=length,
            phase=phase,
            min_run_time=0.0 if ctx.mode != "paper" else None,
            # This suite measures memory; the report draws none of its times.
            min_samples=1,
        )
        for length in shape.lengths
        for n_layers in shape.depths
        for family, attention, reversible in shape.models
        for phase in shape.phases
    ]


def budget_gb(ctx: GridContext) -> float | None:
    if ctx.mode == "quick":
        return None
    if ctx.mode == "default" and ctx.device == "cpu":
        return 4.0
    return MEMORY_BUDGET_GIB


def summarize(rows: list[dict[str, Any]], ctx: GridContext) -> list[str]:
    """Per model, phase and depth: the longest length that ran, its peak, and where the model
    ran out; then, per model, how its peak grows with depth at one length."""
    lines = [
        "| model | phase | layers | longest ok L | peak there (MiB) | ran out at |",
        "|---|---|---|---|---|---|",
    ]
    groups = sorted({(r["model"], r["phase"], r["n_layers"]) for r in rows}, key=_order)
    for model, phase, n_layers in groups:
        mine = [
            r for r in rows if (r["model"], r["phase"], r["n_layers"]) == (model, phase, n_layers)
        ]
        ok = [r for r in mine if r["status"] == "ok"]
        failed = sorted(
            (r for r in mine if r["status"] in ("oom", "timeout", "error")),
            key=lambda r: r["seq_len"],
        )
        best = max(ok, key=lambda r: r["seq_len"]) if ok else None
        first = f"{failed[0]['status']} at L={failed[0]['seq_len']}" if failed else "-"
        length, peak = (best["seq_len"], f"{best['peak_mib']:.0f}") if best else ("-", "-")
        lines.append(f"| {model} | {phase} | {n_layers} | {length} | {peak} | {first} |")
    return lines + _depth_lines(rows)


def _depth_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Peak against depth at the longest length where a model ran at every depth."""
    found = []
    for model, phase in sorted({(r["model"], r["phase"]) for r in rows}, key=_order):
        ok = [r for r in rows if r["status"] == "ok" and (r["model"], r["phase"]) == (model, phase)]
        depths = sorted({r["n_layers"] for r in ok})
        common = [
            length
            for length in {r["seq_len"] for r in ok}
            if {r["n_layers"] for r in ok if r["seq_len"] == length} == set(depths)
        ]
        if len(depths) < 2 or not common:
            continue
        length = max(common)
        peaks = {r["n_layers"]: r["peak_mib"] for r in ok if r["seq_len"] == length}
        low, high = peaks[depths[0]], peaks[depths[-1]]
        found.append(
            f"| {model} | {phase} | {length} | "
            + " | ".join(f"{peaks[d]:.0f}" for d in (depths[0], depths[-1]))
            + f" | {high / low:.2f} |"
        )
    if not found:
        return []
    return [
        "",
        f"peak against depth ({' and '.join(str(d) for d in _all_depths(rows))} "
        "layers), at the longest length every depth ran:",
        "",
        "| model | phase | L | shallow (MiB) | deep (MiB) | deep / shallow |",
        "|---|---|---|---|---|---|",
        *found,
    ]


def _all_depths(rows: list[dict[str, Any]]) -> list[int]:
    return sorted({r["n_layers"] for r in rows if r["status"] == "ok"})


def _order(key: tuple) -> tuple:
    """Models in the grid's order, then the rest of the key."""
    names = [f"{f}-{a}" + ("-rev" if rev and f == "reformer" else "") for f, a, rev in PAPER_MODELS]
    model = key[0]
    return (names.index(model) if model in names else len(names), model, *map(str, key[1:]))


SUITE = Suite(
    name="memory",
    description="peak memory vs length; where each model runs out",
    grid=grid,
    summarize=summarize,
    default_max_memory_gb=budget_gb,
)
