"""Position-wise feed-forward, optionally chunked over the sequence (Reformer sec. 3, "Chunking").

The feed-forward is independent per position, so it can run on ``ff_chunks`` slices of
the sequence one after another. Chunking the forward alone is not enough: autograd would
still keep every chunk's (B, L/n, d_ff) hidden activations for backward, i.e. all of
them. :class:`ChunkedApply` therefore keeps only its input x (B, L, d_model) and, in
backward, recomputes one chunk's activations at a time, so saved memory is O(B·L·d_model)
rather than O(B·L·d_ff) and the transient peak is one chunk's O(B·L·d_ff / n).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from reformer.config import ReformerConfig
from reformer.recompute import AutocastState, non_leaf_view


class FeedForward(nn.Module):
    """Pre-LN feed-forward branch: LayerNorm -> Linear(d, d_ff) -> GELU -> Linear(d_ff, d).

    x (B, L, d_model) -> (B, L, d_model). With ``config.ff_chunks`` > 1 it runs through
    :class:`ChunkedApply`; with 1 it is ordinary autograd (the baseline's cost exactly).
    """

    def __init__(self, config: ReformerConfig) -> None:
        super().__init__()
        self.ff_chunks = config.ff_chunks
        self.norm = nn.LayerNorm(config.d_model)
        self.w_in = nn.Linear(config.d_model, config.d_ff)
        self.w_out = nn.Linear(config.d_ff, config.d_model)

    def position_wise(self, x: torch.Tensor) -> torch.Tensor:
        """The per-position map, on any slice of positions: (..., d_model) -> (..., d_model)."""
        return self.w_out(F.gelu(self.w_in(self.norm(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.ff_chunks == 1:
            return self.position_wise(x)
        return chunked_apply(self.position_wise, x, self.ff_chunks, list(self.parameters()))


def chunked_apply(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    n_chunks: int,
    params: list[nn.Parameter],
) -> torch.Tensor:
    """``fn`` applied to x (B, L, d) in ``n_chunks`` slices along L; memory-frugal backward.

    ``fn`` must act on each position independently, return the shape of its input, be
    deterministic (no dropout inside) and use only ``params`` (plus constants).
    """
    return ChunkedApply.apply(x, fn, n_chunks, *params)


def _chunk_bounds(seq_len: int, n_chunks: int) -> list[tuple[int, int]]:
    """(start, length) of up to n_chunks near-equal slices covering [0, seq_len)."""
    size = -(-seq_len // n_chunks)
    return [(start, min(size, seq_len - start)) for start in range(0, seq_len, size)]


class ChunkedApply(torch.autograd.Function):
    """y = fn(x) chunk by chunk along dim -2; backward recomputes each chunk's graph."""

    @staticmethod
    def forward(ctx, x, fn, n_chunks, *params):
        ctx.fn = fn
        ctx.n_chunks = n_chunks
        ctx.params = params  # leaves owned by the module: holding them costs nothing
        ctx.autocast = AutocastState.current(x.device.type)
        ctx.save_for_backward(x)
        out = torch.empty_like(x)
        # Detached: inside forward, views of x would claim requires_grad with no grad_fn,
        # which module hooks (e.g. FlopCounterMode's module tracker) reject.
        source = x.detach()
        for start, length in _chunk_bounds(x.shape[-2], n_chunks):
            out.narrow(-2, start, length).copy_(fn(source.narrow(-2, start, length)))
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        (x,) = ctx.saved_tensors
        wants_x = ctx.needs_input_grad[0]
        param_flags = ctx.needs_input_grad[3:]
        trainable = [p for p, flag in zip(ctx.params, param_flags, strict=True) if flag]
        grad_x = torch.empty_like(x) if wants_x else None
        param_grads: list[torch.Tensor | None] = [None] * len(trainable)
        for start, length in _chunk_bounds(x.shape[-2], ctx.n_chunks):
            chunk = x.narrow(-2, start, length).detach().requires_grad_(wants_x)
            with torch.enable_grad(), ctx.autocast.restore():
                y = ctx.fn(non_leaf_view(chunk))
            inputs = ([chunk] if wants_x else []) + trainable
            grads = torch.autograd.grad(
                y, inputs, grad_out.narrow(-2, start, length), allow_unused=True
            )
            if grad_x is not None:
                grad_x.narrow(-2, start, length).copy_(grads[0])
                grads = grads[1:]
            for i, grad in enumerate(grads):
                if grad is not None:
                    held = param_grads[i]
                    param_grads[i] = grad if held is None else held + grad
        trainable_grads = iter(param_grads)
        all_param_grads = [next(trainable_grads) if flag else None for flag in param_flags]
        return (grad_x, None, None, *all_param_grads)
