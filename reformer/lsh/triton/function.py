"""Autograd Function around the Triton LSH kernels (Reformer sec. 2; backward as in
FlashAttention, Dao et al. 2022, sec. 3.1): the Triton twin of
``reformer.lsh.torch_path.LSHAttentionFunction``, with the same inputs and semantics.

Saved for backward: qk, v, the sort permutation (int32), key_valid, the output and two
float32 statistics per position (row maximum over all rounds, log of the row sum); no
(L, 2c) score matrix and no sorted copy of qk or v. The chunk ids used by the duplicate
counts are rebuilt from the permutation in backward.
"""

from __future__ import annotations

from typing import Any

import torch

from reformer.lsh.layout import Layout, chunk_ids, normalize_backward_, row_dot
from reformer.lsh.triton.config import FP_FUSION, KernelConfig, kernel_config, launch_grid
from reformer.lsh.triton.kernels import (
    lsh_backward_key_round,
    lsh_backward_query_round,
    lsh_forward_round,
)


def _common(layout: Layout, config: KernelConfig, dim: int, dim_v: int, has_valid: bool):
    """Scalar arguments and constexprs shared by the three kernels (after the pointers)."""
    scalars = dict(
        n_heads=layout.n_heads,
        length=layout.padded_len,
        n_rounds=layout.n_hashes,
        chunks_per_round=layout.chunks_per_round,
        total=layout.total_chunks,
        bucket_size=layout.bucket_size,
        dim=dim,
        dim_v=dim_v,
        scale=layout.scale,
    )
    constexprs = dict(
        BLOCK_C=config.block_c,
        BLOCK_Q=config.block_q or config.block_c,
        BLOCK_D=config.block_d,
        BLOCK_DV=config.block_dv,
        CAUSAL=layout.causal,
        HAS_VALID=has_valid,
        COUNTS=layout.needs_counts,
        LOOK_BACK=layout.look_back,
        PRECISION=config.precision,
        num_warps=config.num_warps,
        enable_fp_fusion=FP_FUSION,
    )
    return scalars, constexprs


def _aligned(x: torch.Tensor) -> torch.Tensor:
    """x, contiguous and 16-byte aligned. Triton compiles a separate binary for a pointer
    that is not 16-byte aligned (no vectorised loads, other registers): a view into the
    middle of a buffer would run a kernel that the ahead-of-time check never built."""
    x = x.contiguous()
    if x.data_ptr() % 16:
        x = x.clone()
    return x


def _chunk_of(sort_idx: torch.Tensor, layout: Layout) -> torch.Tensor:
    if layout.needs_counts:
        return chunk_ids(sort_idx, layout).contiguous()
    return torch.zeros(1, dtype=torch.int32, device=sort_idx.device)  # never read


def _valid(key_valid, device) -> torch.Tensor:
    if key_valid is None:
        return torch.zeros(1, dtype=torch.int8, device=device)  # never read
    return _aligned(key_valid.to(torch.int8))


Launch = tuple[Any, tuple[int], tuple, dict]  # (kernel, grid, positional args, keywords)


def forward_launches(
    qk, v, sort32, chunk_of, valid, out, row_max, row_sum, layout, config, has_valid
):
    """The forward's launches, one per round, in order: (kernel, grid, args, keywords).
    ``TritonLSHFunction`` runs them; ``reformer.lsh.triton.aot`` compiles them, so the
    ahead-of-time check sees the arguments that Triton specialises on at run time."""
    scalars, constexprs = _common(layout, config, qk.shape[-1], v.shape[-1], has_valid)
    grid = launch_grid(layout, config.query_tiles)
    pointers = (qk, v, sort32, chunk_of, valid, out, row_max, row_sum)
    return [
        (lsh_forward_round, grid, (*pointers, rnd), {**scalars, "FIRST": rnd == 0, **constexprs})
        for rnd in range(layout.n_hashes)
    ]


def backward_launches(
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
    grad_keys,
    grad_v,
    layout,
    config,
    has_valid,
):
    """The backward's launches in order, per round the dq kernel then the dk̂/dv kernel."""
    scalars, constexprs = _common(layout, config, qk.shape[-1], v.shape[-1], has_valid)
    grid = launch_grid(layout, config.query_tiles)
    inputs = (qk, v, grad_out, sort32, chunk_of, valid, row_max, log_sum, delta)
    launches: list[Launch] = []
    for rnd in range(layout.n_hashes):
        launches.append(
            (
                lsh_backward_query_round,
                grid,
                (*inputs, grad_q, rnd),
                {**scalars, **constexprs},
            )
        )
        launches.append(
            (
                lsh_backward_key_round,
                grid,
                (*inputs, grad_keys, grad_v, rnd),
                {**scalars, **constexprs},
            )
        )
    return launches


def forward_buffers(qk, v, sort_idx, key_valid, layout: Layout):
    """Kernel-ready inputs and fresh outputs of the forward: qk, v (aligned), sort32
    (B, H, R, Lp) int32, chunk_of, valid, out (B, H, Lp, Dv) float32, row_max and row_sum
    (B, H, Lp) float32."""
    qk, v = _aligned(qk), _aligned(v)
    sort32 = _aligned(sort_idx.to(torch.int32))
    chunk_of, valid = _chunk_of(sort_idx, layout), _valid(key_valid, qk.device)
    out = torch.empty(v.shape, dtype=torch.float32, device=v.device)
    row_max = torch.empty(qk.shape[:3], dtype=torch.float32, device=qk.device)
    return qk, v, sort32, chunk_of, valid, out, row_max, torch.empty_like(row_max)


class TritonLSHFunction(torch.autograd.Function):
    """out (B, H, Lp, Dv) = LSH attention of padded qk (B, H, Lp, D), v (B, H, Lp, Dv),
    given ``sort_idx`` (B, H, R, Lp) and ``key_valid`` (B, Lp) bool or None, as
    ``LSHAttentionFunction``. Inputs float16, bfloat16 or float32; float32 accumulation."""

    @staticmethod
    def forward(ctx, qk, v, sort_idx, key_valid, layout: Layout):
        capability = 90
        if qk.is_cuda:
            major, minor = torch.cuda.get_device_capability(qk.device)
            capability = 10 * major + minor
        config = kernel_config(layout.bucket_size, qk.shape[-1], v.shape[-1], qk.dtype, capability)
        buffers = forward_buffers(qk, v, sort_idx, key_valid, layout)
        qk, v, sort32, chunk_of, valid, out, row_max, row_sum = buffers
        has_valid = key_valid is not None
        launches = forward_launches(
            qk, v, sort32, chunk_of, valid, out, row_max, row_sum, layout, config, has_valid
        )
        for kernel, grid, args, keywords in launches:
            kernel[grid](*args, **keywords)
        out = out.to(v.dtype)
        ctx.layout, ctx.config, ctx.has_valid = layout, config, has_valid
        ctx.save_for_backward(qk, v, sort32, valid, out, row_max, row_sum.log_())
        return out

    @staticmethod
    def backward(ctx, grad_out):
        qk, v, sort32, valid, out, row_max, log_sum = ctx.saved_tensors
        layout: Layout = ctx.layout
        chunk_of = _chunk_of(sort32.long() if layout.needs_counts else sort32, layout)
        grad_out = _aligned(grad_out)
        delta = row_dot(grad_out, out, torch.float32)  # (B, H, Lp): rowsum(dO · O)
        grad_q = torch.zeros(qk.shape, dtype=torch.float32, device=qk.device)
        grad_keys = torch.zeros_like(grad_q)
        grad_v = torch.zeros(v.shape, dtype=torch.float32, device=v.device)
        launches = backward_launches(
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
            grad_keys,
            grad_v,
            layout,
            ctx.config,
            ctx.has_valid,
        )
        for kernel, grid, args, keywords in launches:
            kernel[grid](*args, **keywords)
        grad_qk = grad_q + normalize_backward_(qk, grad_keys)  # grad_keys is ours to reuse
        return grad_qk.to(qk.dtype), grad_v.to(v.dtype), None, None, None
