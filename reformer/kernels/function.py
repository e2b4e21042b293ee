"""Autograd Function around the Triton LSH kernels (Reformer sec. 2; backward as in
FlashAttention, Dao et al. 2022, sec. 3.1): the Triton twin of
``reformer.lsh_core.LSHAttentionFunction``, with the same inputs and semantics.

Saved for backward: qk, v, the sort permutation (int32), key_valid, the output and two
float32 statistics per position (row maximum over all rounds, log of the row sum); no
(L, 2c) score matrix and no sorted copy of qk or v. The chunk ids used by the duplicate
counts are rebuilt from the permutation in backward.
"""

from __future__ import annotations

import torch

from reformer.kernels.config import FP_FUSION, KernelConfig, kernel_config
from reformer.kernels.lsh_triton import (
    lsh_backward_key_round,
    lsh_backward_query_round,
    lsh_forward_round,
)
from reformer.lsh_core import Layout, _normalize_backward_, chunk_ids


def _common(layout: Layout, config: KernelConfig, dim: int, dim_v: int, key_valid):
    """Scalar arguments and constexprs shared by the three kernels (after the pointers)."""
    scalars = dict(
        n_heads=layout.n_heads,
        length=layout.padded_len,
        n_rounds=layout.n_hashes,
        chunks_per_round=layout.chunks_per_round,
        total=layout.total_chunks,
        chunk=layout.chunk,
        dim=dim,
        dim_v=dim_v,
        scale=layout.scale,
    )
    constexprs = dict(
        BLOCK_C=config.block_c,
        BLOCK_D=config.block_d,
        BLOCK_DV=config.block_dv,
        CAUSAL=layout.causal,
        HAS_VALID=key_valid is not None,
        COUNTS=layout.needs_counts,
        LOOK_BACK=layout.look_back,
        PRECISION=config.precision,
        num_warps=config.num_warps,
        enable_fp_fusion=FP_FUSION,
    )
    return scalars, constexprs


def _chunk_of(sort_idx: torch.Tensor, layout: Layout) -> torch.Tensor:
    if layout.needs_counts:
        return chunk_ids(sort_idx, layout).contiguous()
    return torch.zeros(1, dtype=torch.int32, device=sort_idx.device)  # never read


def _valid(key_valid, device) -> torch.Tensor:
    if key_valid is None:
        return torch.zeros(1, dtype=torch.int8, device=device)  # never read
    return key_valid.to(torch.int8).contiguous()


class TritonLSHFunction(torch.autograd.Function):
    """out (B, H, Lp, Dv) = LSH attention of padded qk (B, H, Lp, D), v (B, H, Lp, Dv),
    given ``sort_idx`` (B, H, R, Lp) and ``key_valid`` (B, Lp) bool or None, as
    ``LSHAttentionFunction``. Inputs float16, bfloat16 or float32; float32 accumulation."""

    @staticmethod
    def forward(ctx, qk, v, sort_idx, key_valid, layout: Layout):
        qk, v = qk.contiguous(), v.contiguous()
        dim, dim_v = qk.shape[-1], v.shape[-1]
        config = kernel_config(layout.chunk, dim, dim_v, qk.dtype)
        sort32 = sort_idx.to(torch.int32).contiguous()
        chunk_of, valid = _chunk_of(sort_idx, layout), _valid(key_valid, qk.device)
        out = torch.empty(v.shape, dtype=torch.float32, device=v.device)
        row_max = torch.empty(qk.shape[:3], dtype=torch.float32, device=qk.device)
        row_sum = torch.empty_like(row_max)
        scalars, constexprs = _common(layout, config, dim, dim_v, key_valid)
        grid = (layout.chunks_per_round, layout.batch * layout.n_heads)
        for rnd in range(layout.n_hashes):
            lsh_forward_round[grid](
                qk,
                v,
                sort32,
                chunk_of,
                valid,
                out,
                row_max,
                row_sum,
                rnd,
                **scalars,
                FIRST=rnd == 0,
                **constexprs,
            )
        out = out.to(v.dtype)
        ctx.layout, ctx.config = layout, config
        ctx.save_for_backward(qk, v, sort32, valid, out, row_max, row_sum.log_())
        ctx.has_valid = key_valid is not None
        return out

    @staticmethod
    def backward(ctx, grad_out):
        qk, v, sort32, valid, out, row_max, log_sum = ctx.saved_tensors
        layout: Layout = ctx.layout
        chunk_of = _chunk_of(sort32.long() if layout.needs_counts else sort32, layout)
        grad_out = grad_out.contiguous()
        delta = (grad_out.float() * out.float()).sum(-1)  # (B, H, Lp): rowsum(dO · O)
        grad_q = torch.zeros(qk.shape, dtype=torch.float32, device=qk.device)
        grad_keys = torch.zeros_like(grad_q)
        grad_v = torch.zeros(v.shape, dtype=torch.float32, device=v.device)
        scalars, constexprs = _common(
            layout, ctx.config, qk.shape[-1], v.shape[-1], valid if ctx.has_valid else None
        )
        grid = (layout.chunks_per_round, layout.batch * layout.n_heads)
        for rnd in range(layout.n_hashes):
            lsh_backward_query_round[grid](
                qk,
                v,
                grad_out,
                sort32,
                chunk_of,
                valid,
                row_max,
                log_sum,
                delta,
                grad_q,
                rnd,
                **scalars,
                **constexprs,
            )
            lsh_backward_key_round[grid](
                qk,
                v,
                grad_out,
                sort32,
                chunk_of,
                valid,
                row_max,
                log_sum,
                delta,
                grad_keys,
                grad_v,
                rnd,
                **scalars,
                **constexprs,
            )
        grad_qk = grad_q + _normalize_backward_(qk, grad_keys)  # grad_keys is ours to reuse
        return grad_qk.to(qk.dtype), grad_v.to(v.dtype), None, None, None
