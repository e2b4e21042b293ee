"""peers: the same attention shapes through our LSH, reformer-pytorch, HF transformers, SDPA.

One causal attention layer (d_model 256, 4 heads, LSH-4, chunk 64, batch 1), forward +
backward with input gradients. How each peer is matched to our config, and what cannot be
matched, is in baselines/peers.py (reformer-pytorch: chunk length matched, bucket count
L/64 vs our 2L/64; HF: chunk length and bucket count matched, no duplicate correction).
A peer that is not installed is recorded as ``skipped`` with the install command.
"""

from __future__ import annotations

from typing import Any

from baselines.peers import PEER_PACKAGES, missing_note, peer_available
from reformer.config import ReformerConfig
from suites.grids._common import layer_point, ok_rows, powers_of_two, preset
from suites.registry import GridContext, Point, Suite

MODELS = ("attn-lsh", *PEER_PACKAGES, "attn-sdpa")


def _shape(ctx: GridContext) -> tuple[list[int], ReformerConfig]:
    if ctx.mode == "quick":
        return [256, 512], preset(ctx)
    if ctx.mode == "full":
        return powers_of_two(2**10, 2**16), preset(ctx)
    return [2**10, 2**12, 2**14], preset(ctx)


def grid(ctx: GridContext) -> list[Point]:
    lengths, layer = _shape(ctx)
    points = []
    for length in lengths:
        for model in MODELS:
            missing = model in PEER_PACKAGES and not peer_available(model)
            config = layer.replace(attention="sdpa" if model == "attn-sdpa" else "lsh")
            points.append(layer_point(
                ctx, config, model=None if model.startswith("attn-") else model,
                seq_len=length, min_run_time=5.0 if ctx.mode == "default" else None,
                options={"skip_reason": missing_note(model)} if missing else None))
    return points


def summarize(rows: list[dict[str, Any]], ctx: GridContext) -> list[str]:
    """Ours against the faster installed LSH peer at each length (time and peak)."""
    lines = ["ours (attn-lsh) against the faster LSH peer at each length:", "",
             "| L | faster peer | ours t (ms) | peer t (ms) | time ratio | ours peak (MiB) "
             "| peer peak (MiB) | peak ratio |", "|---|---|---|---|---|---|---|---|"]
    for length in sorted({r["seq_len"] for r in rows}):
        ours = ok_rows(rows, model="attn-lsh", seq_len=length)
        peers = [r for model in PEER_PACKAGES for r in ok_rows(rows, model=model,
                                                                seq_len=length)]
        if not ours or not peers:
            continue
        mine, peer = ours[0], min(peers, key=lambda r: r["t_median_ms"])
        lines.append(
            f"| {length} | {peer['impl']} {peer['impl_version']} | {mine['t_median_ms']:.0f} | "
            f"{peer['t_median_ms']:.0f} | {mine['t_median_ms'] / peer['t_median_ms']:.2f} | "
            f"{mine['peak_mb']:.0f} | {peer['peak_mb']:.0f} | "
            f"{mine['peak_mb'] / peer['peak_mb']:.2f} |")
    skipped = sorted({r["error"] for r in rows if r.get("status") == "skipped"
                      and r.get("model") in PEER_PACKAGES})
    return lines + [f"skipped: {note}" for note in skipped]


SUITE = Suite(name="peers", description="ours vs reformer-pytorch, HF transformers, SDPA",
              grid=grid, summarize=summarize)
