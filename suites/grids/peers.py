"""peers: the same attention shapes through our LSH, reformer-pytorch, HF transformers, SDPA.

One causal attention layer (d_model 256, 4 heads, LSH-4, chunk 64, batch 1), forward +
backward with input gradients. How each peer is matched to our config, and what cannot be
matched, is in baselines/peers.py (reformer-pytorch: chunk length matched, bucket count
L/64 vs our 2L/64; HF: chunk length and bucket count matched, no duplicate correction).
A peer that is not installed is recorded as ``skipped`` with the install command.

On CUDA the layer runs in bfloat16 and our LSH is measured through both backends (torch
path and Triton kernels); the default CUDA grid is 4K and 16K, ``--paper`` 1K to 64K.

The model race: a whole language model's training step (forward, backward of the LM loss,
AdamW) at the same lengths, batch 1, float32: our ReformerLM (6 layers, d_model 256, 4
heads, d_ff 1024, reversible, feed-forward in 16 chunks, axial positions, LSH-4, chunk 64),
HF's ``ReformerModelWithLMHead`` and reformer-pytorch's ``ReformerLM`` built at the same
shapes (baselines/peer_models.py says what cannot be matched), and the Transformer
baseline with SDPA. A user picks a library by this step, not by one attention layer.
"""

from __future__ import annotations

from typing import Any

from baselines.peer_models import PEER_LMS, model_race_config
from baselines.peers import PEER_PACKAGES, missing_note, peer_available
from reformer.config import ReformerConfig
from suites.grids._common import (
    CUDA_MIN_RUN_TIME,
    CUDA_SPEED_DTYPE,
    layer_point,
    lm_point,
    model_point,
    ok_rows,
    powers_of_two,
    preset,
)
from suites.harness.backend import backend_ablation, device_backend
from suites.harness.points import Point
from suites.harness.suite import GridContext, Suite

MODELS = ("attn-lsh", *PEER_PACKAGES, "attn-sdpa")
OURS_LM = "reformer-lsh-rev"
RACE_MODELS = (OURS_LM, *PEER_LMS, "transformer-sdpa")
RACE_FF_CHUNKS = 16


def _shape(ctx: GridContext) -> tuple[list[int], ReformerConfig]:
    if ctx.mode == "quick":
        return [256, 512], preset(ctx)
    if ctx.mode == "paper":
        return powers_of_two(2**10, 2**16), preset(ctx)
    if ctx.device == "cuda":
        return [2**12, 2**14], preset(ctx)
    return [2**10, 2**12, 2**14], preset(ctx)


def grid(ctx: GridContext) -> list[Point]:
    lengths, layer = _shape(ctx)
    cuda = ctx.device == "cuda"
    dtype = CUDA_SPEED_DTYPE if cuda else "float32"
    min_run_time = None if ctx.mode != "default" else CUDA_MIN_RUN_TIME if cuda else 5.0
    points = []
    for length in lengths:
        for model in MODELS:
            missing = model in PEER_PACKAGES and not peer_available(model)
            config = layer.replace(attention="sdpa" if model == "attn-sdpa" else "lsh")
            # Our LSH through each backend on CUDA; a peer runs its own code.
            configs = (
                backend_ablation(config, ctx.device, dtype) if model == "attn-lsh" else [config]
            )
            points += [
                layer_point(
                    ctx,
                    variant,
                    model=None if model.startswith("attn-") else model,
                    seq_len=length,
                    dtype=dtype,
                    min_run_time=min_run_time,
                    options={"skip_reason": missing_note(model)} if missing else None,
                )
                for variant in configs
            ]
    return points + race(ctx, lengths, layer)


def race(ctx: GridContext, lengths: list[int], base: ReformerConfig) -> list[Point]:
    """The whole-model training steps of the model race (module docstring): float32 on a
    CPU; on CUDA bfloat16 with our LSH through the backend that fits (unmeasured so far)."""
    cuda = ctx.device == "cuda"
    dtype = CUDA_SPEED_DTYPE if cuda else "float32"
    sizing: dict[str, Any] = {
        "phase": "train_step",
        "dtype": dtype,
        "min_run_time": None if ctx.mode != "default" else CUDA_MIN_RUN_TIME if cuda else 5.0,
    }
    lm = base.replace(ff_chunks=RACE_FF_CHUNKS, reversible=True, attention="lsh")
    points = []
    for length in lengths:
        config = model_race_config(lm, length)
        ours = device_backend(config, ctx.device, dtype)
        points.append(lm_point(ctx, "reformer", ours, seq_len=length, **sizing))
        for model, package in PEER_LMS.items():
            missing = not peer_available(package)
            options = {"skip_reason": missing_note(package)} if missing else None
            points.append(
                model_point(ctx, model, config, seq_len=length, options=options, **sizing)
            )
        sdpa = config.replace(attention="sdpa")
        points.append(lm_point(ctx, "transformer", sdpa, seq_len=length, **sizing))
    return points


def summarize(rows: list[dict[str, Any]], ctx: GridContext) -> list[str]:
    """Ours against the faster installed LSH peer at each length (time and peak)."""
    lines = [
        "ours (attn-lsh, per backend) against the faster LSH peer at each length:",
        "",
        "| L | ours | faster peer | ours t (ms) | peer t (ms) | time ratio | ours peak "
        "(MiB) | peer peak (MiB) | peak ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for length in sorted({r["seq_len"] for r in rows}):
        ours = ok_rows(rows, model="attn-lsh", seq_len=length)
        peers = [r for model in PEER_PACKAGES for r in ok_rows(rows, model=model, seq_len=length)]
        if not peers:
            continue
        peer = min(peers, key=lambda r: r["t_median_ms"])
        for mine in ours:
            lines.append(
                f"| {length} | {mine.get('backend') or 'attn-lsh'} | {peer['impl']} "
                f"{peer['impl_version']} | {mine['t_median_ms']:.0f} | "
                f"{peer['t_median_ms']:.0f} | {mine['t_median_ms'] / peer['t_median_ms']:.2f} | "
                f"{mine['peak_mib']:.0f} | {peer['peak_mib']:.0f} | "
                f"{mine['peak_mib'] / peer['peak_mib']:.2f} |"
            )
    skipped = sorted(
        {
            r["error"]
            for r in rows
            if r.get("status") == "skipped" and r.get("model") in (*PEER_PACKAGES, *PEER_LMS)
        }
    )
    return lines + race_summary(rows) + [f"skipped: {note}" for note in skipped]


def race_summary(rows: list[dict[str, Any]]) -> list[str]:
    """The model race: our whole training step against the faster peer LM (time) and the
    smaller one (peak), per length."""
    lines = [
        "",
        "model race, whole training step (batch 1): ours against the faster and the smaller "
        "peer LM:",
        "",
        "| L | ours t (s) | faster peer | peer t (s) | time ratio | ours peak (MiB) | "
        "smaller peer | peer peak (MiB) | peak ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    found = False
    for length in sorted({r["seq_len"] for r in rows}):
        ours = ok_rows(rows, model=OURS_LM, seq_len=length, phase="train_step")
        peers = [r for model in PEER_LMS for r in ok_rows(rows, model=model, seq_len=length)]
        if not ours or not peers:
            continue
        found = True
        mine = ours[-1]
        fast = min(peers, key=lambda r: r["t_median_ms"])
        small = min(peers, key=lambda r: r["peak_mib"])
        lines.append(
            f"| {length} | {mine['t_median_ms'] / 1e3:.2f} | {fast['impl']} | "
            f"{fast['t_median_ms'] / 1e3:.2f} | {mine['t_median_ms'] / fast['t_median_ms']:.2f} | "
            f"{mine['peak_mib']:.0f} | {small['impl']} | {small['peak_mib']:.0f} | "
            f"{mine['peak_mib'] / small['peak_mib']:.2f} |"
        )
    return lines if found else []


SUITE = Suite(
    name="peers",
    description="ours vs reformer-pytorch, HF transformers, SDPA",
    grid=grid,
    summarize=summarize,
)
