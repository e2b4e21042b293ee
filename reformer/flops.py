"""Analytic FLOPs of ReformerLM and TransformerLM for a config and sequence length.

What is counted: matrix products only, at 2 FLOPs per multiply-add (2·m·n·k for an
(m, k) @ (k, n) product), the convention of ``torch.utils.flop_counter`` and of MFU
figures. Elementwise work (softmax, LayerNorm, GELU, masking, sorting, gathers) and
embedding lookups are not counted. Per layer, for batch B, length L, width d, heads H
(d_head = d / H), feed-forward width d_ff:

- projections: full/sdpa 4 · 2BLd² (q, k, v, out); lsh and local 3 · 2BLd² (shared qk,
  v, out).
- attention core: full/sdpa 2 · 2·B·H·L²·d_head (QK^T and AV over the L × L square),
  halved when causal: the FlashAttention benchmarks' convention, and what fused kernels
  (PyTorch's CPU flash kernel too) do, skipping fully masked blocks. The materialised
  "full" attention computes the whole square anyway; its extra half is not model work, so
  its MFU counts only what a causal model needs. lsh: hashing
  2·B·H·L·d_head·R·W (W = n_buckets/2 summed over hash factors, R = n_hashes) plus
  2 · 2·B·H·R·Lp·w·d_head, Lp = L padded to a multiple of c = min(bucket_size, L), w = 2·c
  (a chunk and the one before it; c when there is a single chunk in all). local: the
  same with R = 1 and no hashing.
- feed-forward 2 · 2·B·L·d·d_ff; LM head 2·B·L·d·vocab (on all L positions).

``backward=True`` adds the backward pass: twice the forward of every product whose
operands both need gradients, i.e. everything except LSH hashing (piecewise constant, no
gradient). These are *model* FLOPs: the same for every implementation of one model, so
reversibility and FF chunking do not change them. ``recompute=True`` (with backward)
also counts the work the Reformer machinery repeats in backward: one more forward of every
layer when reversible, one more feed-forward forward per layer when ff_chunks > 1, one
more QK^T per LSH round in the LSH kernel's backward (it recomputes logits instead of
storing them; local attention's one round likewise), and for LSH and local layers the qk
projection once more (LayerNorm and the qk, v
projections run under activation checkpointing so the normalised input is not held; the
recomputation stops as soon as it has rebuilt that input, after the qk projection). Fused
SDPA kernels may recompute internally; that is not counted.
"""

from __future__ import annotations

import math

from reformer.checks import require_bool
from reformer.config import ReformerConfig
from reformer.lsh.hashing import resolve_n_buckets, rotation_width


def flops_breakdown(
    config: ReformerConfig,
    seq_len: int,
    batch: int = 1,
    *,
    backward: bool = False,
    recompute: bool = False,
) -> dict[str, int]:
    """FLOPs per component (summed over layers): keys projections, attention, hashing,
    feedforward, head, and with ``recompute`` also recompute. See the module docstring."""
    require_bool("backward", backward)
    require_bool("recompute", recompute)
    if seq_len < 1 or batch < 1:
        raise ValueError(f"seq_len={seq_len} and batch={batch} must be positive ints")
    if recompute and not backward:
        raise ValueError("recompute=True counts work repeated in backward; pass backward=True")
    d, layers, tokens = config.d_model, config.n_layers, batch * seq_len
    lsh = config.attention == "lsh"
    shared_qk = config.attention in ("lsh", "local")
    forward = {
        "projections": layers * (3 if shared_qk else 4) * 2 * tokens * d * d,
        "attention": layers * _attention_core(config, seq_len, batch),
        "hashing": layers * _hashing(config, seq_len, batch) if lsh else 0,
        "feedforward": layers * 2 * 2 * tokens * d * config.d_ff,
        "head": 2 * tokens * d * config.vocab_size,
    }
    if not backward:
        return forward
    total = {name: (3 * flops if name != "hashing" else flops) for name, flops in forward.items()}
    if recompute:
        extra = 0
        if config.reversible:
            extra += sum(forward[name] for name in forward if name != "head")
        if config.ff_chunks > 1:
            extra += forward["feedforward"]
        if shared_qk:
            extra += forward["attention"] // 2  # the kernel's backward recomputes QK^T
            extra += layers * 2 * tokens * d * d  # the checkpoint reruns the qk projection
        total["recompute"] = extra
    return total


def model_flops(
    config: ReformerConfig,
    seq_len: int,
    batch: int = 1,
    backward: bool = False,
    *,
    recompute: bool = False,
) -> int:
    """Total FLOPs of one forward (or forward + backward) pass: see the module docstring."""
    return sum(
        flops_breakdown(config, seq_len, batch, backward=backward, recompute=recompute).values()
    )


def _attention_core(config: ReformerConfig, seq_len: int, batch: int) -> int:
    """QK^T plus AV of one layer."""
    heads, d_head = config.n_heads, config.d_head
    if config.attention not in ("lsh", "local"):
        square = 2 * 2 * batch * heads * seq_len * seq_len * d_head
        return square // 2 if config.causal else square
    # A bucket_size past the sequence runs as one chunk of L (reformer.lsh.attention);
    # local attention is one unhashed round.
    rounds = config.n_hashes if config.attention == "lsh" else 1
    chunk = min(config.bucket_size, seq_len)
    padded_len = math.ceil(seq_len / chunk) * chunk
    total_chunks = rounds * padded_len // chunk
    window = 2 * chunk if total_chunks > 1 else chunk
    return 2 * 2 * batch * heads * rounds * padded_len * window * d_head


def _hashing(config: ReformerConfig, seq_len: int, batch: int) -> int:
    """Random rotations of one layer: (B·L, d_head) @ (d_head, n_hashes · W) per head."""
    factors = resolve_n_buckets(config.n_buckets, seq_len, config.bucket_size)
    return (
        2
        * batch
        * config.n_heads
        * seq_len
        * config.d_head
        * config.n_hashes
        * rotation_width(factors)
    )
