"""Machine-independent figures for the CI gates: saved bytes and counted FLOPs.

- Bytes saved for backward (suites.harness.saved_bytes) by one attention layer of the default
  model (d_model 256, 4 heads, LSH-4, bucket_size 64; Reformer sec. 2) at L = 1K..8K, batch
  1, through the harness's own step (suites.harness.steps), summarized as the least-squares slope
  of log(bytes) against log(L): about 1 for memory linear in L, about 2 for quadratic.
- The same count for a reversible ReformerLM at 2 and 12 layers (Reformer sec. 3: only the
  last layer's output is kept, so depth should not add activations). The debug preset is
  used: flatness in depth does not depend on width, and it keeps CI fast.
- FLOPs of one attention core (scores and weighted sum, forward and backward) counted by
  ``torch.utils.flop_counter`` on the meta device, so nothing is computed and the count is
  exact and instant. LSH does a fixed amount of work per query (n_hashes rounds of two
  chunks), so FLOPs per token should not change with L; full attention's per-token work
  is one row of the L x L score matrix, linear in L (log-log slope 1).

Every figure is deterministic: the same code gives the same number on every machine.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from reformer.config import PRESETS, ReformerConfig
from suites.harness.saved_bytes import saved_bytes
from suites.harness.spec import Workload
from suites.harness.steps import build_step
from suites.rows.names import layer_model

LENGTHS = (1024, 2048, 4096, 8192)
DEPTHS = (2, 12)
DEPTH_SEQ_LEN = 1024


def loglog_slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of log(y) against log(x)."""
    if len(xs) != len(ys) or len(xs) < 2:
        raise ValueError(f"need at least two (x, y) pairs of equal count; got {len(xs)}, {len(ys)}")
    if min(*xs, *ys) <= 0:
        raise ValueError("a log-log slope needs positive x and y")
    log_x, log_y = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mean_x, mean_y = sum(log_x) / len(log_x), sum(log_y) / len(log_y)
    spread = sum((x - mean_x) ** 2 for x in log_x)
    if spread == 0:
        raise ValueError("a log-log slope needs at least two distinct x values")
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(log_x, log_y, strict=True)) / spread


def per_token_spread(per_token: Sequence[float]) -> float:
    """max / min - 1: 0 when every length costs the same per token."""
    return max(per_token) / min(per_token) - 1


def layer_saved_bytes(
    attention: str, lengths: Sequence[int] = LENGTHS, config: ReformerConfig = PRESETS["default"]
) -> dict[int, int]:
    """Bytes saved for backward by one attention layer's forward, per length."""
    config = config.replace(attention=attention)
    points = {}
    for seq_len in lengths:
        step = build_step(
            layer_model(config),
            config.replace(max_seq_len=seq_len),
            Workload(phase="fwd_bwd", seq_len=seq_len),
        )
        points[seq_len], _ = saved_bytes(step.forward)
        del step
    return points


def depth_saved_bytes(
    depths: Sequence[int] = DEPTHS,
    seq_len: int = DEPTH_SEQ_LEN,
    config: ReformerConfig = PRESETS["debug"],
) -> dict[int, int]:
    """Bytes saved for backward by a reversible LSH ReformerLM's loss, per depth."""
    config = config.replace(attention="lsh", reversible=True, max_seq_len=seq_len)
    points = {}
    for n_layers in depths:
        step = build_step(
            "reformer-lsh-rev",
            config.replace(n_layers=n_layers),
            Workload(phase="fwd_bwd", seq_len=seq_len),
        )
        points[n_layers], _ = saved_bytes(step.forward)
        del step
    return points


def attention_core_flops(
    attention: str, seq_len: int, config: ReformerConfig = PRESETS["default"]
) -> int:
    """FLOPs of one attention core, forward and backward, batch 1, counted on meta tensors."""
    from reformer.attention import FullSelfAttention
    from reformer.lsh import lsh_attention
    from reformer.lsh.hashing import resolve_n_buckets, rotation_width

    if attention not in ("lsh", "full"):
        raise ValueError(f"attention={attention!r}: FLOPs are gated for ('lsh', 'full')")
    shape = (1, config.n_heads, seq_len, config.d_head)  # (B, H, L, D)
    with FlopCounterMode(display=False) as counter:
        if attention == "lsh":
            qk, v = (torch.empty(shape, device="meta", requires_grad=True) for _ in range(2))
            factors = resolve_n_buckets(config.n_buckets, seq_len, config.bucket_size)
            rotations = torch.empty(
                config.n_heads,
                config.d_head,
                config.n_hashes,
                rotation_width(factors),
                device="meta",
            )
            out = lsh_attention(
                qk,
                v,
                n_hashes=config.n_hashes,
                bucket_size=config.bucket_size,
                n_buckets=factors if len(factors) > 1 else factors[0],
                causal=config.causal,
                rotations=rotations,
                dup_correction=config.dup_correction,
            )
            assert isinstance(out, torch.Tensor)  # no log-sum-exp asked for
        else:
            q, k, v = (torch.empty(shape, device="meta", requires_grad=True) for _ in range(3))
            out = FullSelfAttention(config.replace(attention="full")).attend(q, k, v, None)
        out.backward(torch.empty_like(out))
    return counter.get_total_flops()


def flops_per_token(attention: str, lengths: Sequence[int] = LENGTHS) -> dict[int, float]:
    return {seq_len: attention_core_flops(attention, seq_len) / seq_len for seq_len in lengths}


def _slope_of(points: Mapping[int, float], unit: str, **detail: Any) -> tuple[float, dict]:
    value = loglog_slope(list(points), list(points.values()))
    return value, {"points": points, "points_unit": unit, **detail}


def _saved_slope(attention: str) -> Callable[[], tuple[float, dict]]:
    def measure() -> tuple[float, dict]:
        return _slope_of(layer_saved_bytes(attention), "bytes", config="default preset, B=1")

    return measure


def _depth_ratio() -> tuple[float, dict]:
    points = depth_saved_bytes()
    low, high = min(points), max(points)
    return points[high] / points[low], {
        "points": points,
        "points_unit": "bytes",
        "config": f"debug preset, L={DEPTH_SEQ_LEN}, B=1",
    }


def _lsh_flops_spread() -> tuple[float, dict]:
    points = flops_per_token("lsh")
    return per_token_spread(list(points.values())), {
        "points": points,
        "points_unit": "FLOPs/token",
        "config": "default preset, B=1",
    }


def _full_flops_slope() -> tuple[float, dict]:
    return _slope_of(flops_per_token("full"), "FLOPs/token", config="default preset, B=1")


MEASURES: dict[str, Callable[[], tuple[float, dict[str, Any]]]] = {
    "saved_bytes_slope_lsh": _saved_slope("lsh"),
    "saved_bytes_slope_full": _saved_slope("full"),
    "saved_bytes_slope_sdpa": _saved_slope("sdpa"),
    "saved_bytes_depth_ratio": _depth_ratio,
    "flops_per_token_spread_lsh": _lsh_flops_spread,
    "flops_per_token_slope_full": _full_flops_slope,
}
