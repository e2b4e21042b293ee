"""The whole LSH attention layer as one autograd Function, backward head by head
(Reformer sec. 2, shared-QK LSH attention; sec. 3, the memory it is meant to save).

x (B, L, d_model) -> shared qk = x W_qkᵀ and v = x W_vᵀ, each split into H heads of
d_head -> LSH attention per head -> out (B, L, d_model) = concat_h(o_h) W_outᵀ + b_out.

Why: run as separate modules, autograd keeps the layer's qk, v and attention output for
backward, three (B, L, d_model) buffers, and the attention's backward then adds its two
gradient accumulators, dO and the projections' input gradient on top: at long L this one
layer's backward sets the training step's peak. :class:`LSHLayerFunction` keeps only x and
the sort order (int32, (B, H, R, Lp)) from its forward. Its backward works one head at a
time: it recomputes that head's qk and v from x (one (B, L, d_head) slice each), reruns
the head's attention forward (the kernel's backward needs the output and its row
statistics), runs the head's attention backward, and folds d(qk) and dv straight into dx
and the weight gradients. So every per-head buffer is a 1/H share of a (B, L, d_model) one,
and only x, dx and dy are whole.

The attention of each head is the same backend call ``lsh_attention`` makes
(:func:`reformer.lsh.attention.apply_backend` on the output of
:func:`reformer.lsh.attention.sorted_layout`), with the same rotations, so the layer
computes the same function as ``to_out(lsh_attention(to_qk(x), to_v(x)))``, up to
floating-point rounding (the projections and the output projection are summed head by
head). The module uses it where the fused C kernel runs (``LSHSelfAttention.fuses``); the
tests also run it on the torch path in float64 against the module's ordinary path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.autograd.function import once_differentiable

from reformer.lsh.attention import (
    apply_backend,
    key_validity,
    pad_to_chunks,
    read_as_zeros,
    sort_order,
)
from reformer.lsh.layout import Layout


@dataclass(frozen=True)
class LayerSpec:
    """What one call of the layer needs besides its tensors."""

    n_heads: int
    n_hashes: int
    bucket_size: int  # the chunk actually run: min(config.bucket_size, L)
    factors: tuple[int, ...]  # bucket-count factors of the hash (reformer.lsh.hashing)
    causal: bool
    dup_correction: bool
    backend: str  # as resolved: "cpu" in the model; "torch" in the float64 tests
    slice_elements: int

    def layout(self, batch: int, seq_len: int, d_head: int) -> Layout:
        """The :class:`Layout` of one head's attention (n_heads 1)."""
        padded_len = math.ceil(seq_len / self.bucket_size) * self.bucket_size
        return Layout(
            batch=batch,
            n_heads=1,
            n_hashes=self.n_hashes,
            padded_len=padded_len,
            bucket_size=self.bucket_size,
            causal=self.causal,
            dup_correction=self.dup_correction,
            scale=d_head**-0.5,
            slice_elements=self.slice_elements,
        )


def lsh_layer(
    x: torch.Tensor,
    w_qk: torch.Tensor,
    w_v: torch.Tensor,
    w_out: torch.Tensor,
    b_out: torch.Tensor | None,
    rotations: torch.Tensor,
    spec: LayerSpec,
    padding_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """The LSH attention layer of x (B, L, d_model) with weights w_qk, w_v, w_out
    (d_model, d_model) and bias b_out (d_model) or None, the call's ``rotations`` (H,
    d_head, R, W) and ``padding_mask`` (B, L) bool or None: (B, L, d_model). Memory-frugal
    backward (module docstring). L >= 1, B >= 1."""
    return LSHLayerFunction.apply(x, w_qk, w_v, w_out, b_out, rotations, padding_mask, spec)


def _head_rows(h: int, d_head: int) -> slice:
    return slice(h * d_head, (h + 1) * d_head)


def _head_projection(x2d: torch.Tensor, weight: torch.Tensor, h: int, shape) -> torch.Tensor:
    """Head h of x2d (B·L, d_model) projected by ``weight`` (d_model, d_model): (B, 1, L,
    d_head), laid out (B, L, 1, d_head) as the module's projections are."""
    batch, seq_len, d_head = shape
    rows = weight[_head_rows(h, d_head)]
    return (x2d @ rows.t()).view(batch, seq_len, 1, d_head).transpose(1, 2)


def _head_inputs(x2d, w_qk, w_v, h: int, shape, padding_mask):
    """Head h's qk and v (B, 1, L, d_head) from x2d (B·L, d_model), padded positions read
    as zeros: what the forward computes and the backward recomputes."""
    return read_as_zeros(
        _head_projection(x2d, w_qk, h, shape), _head_projection(x2d, w_v, h, shape), padding_mask
    )


def _flat(head: torch.Tensor) -> torch.Tensor:
    """(B, 1, L, d) -> (B·L, d): a view for the (B, L, 1, d) layouts used here."""
    return head.transpose(1, 2).reshape(-1, head.shape[-1])


class LSHLayerFunction(torch.autograd.Function):
    """out (B, L, d_model) = LSH attention layer of x (B, L, d_model); see the module
    docstring. Saves x, the weights (held by the module anyway), the sort order (B, H,
    R, Lp) int32 and the real keys (B, Lp) bool or None."""

    @staticmethod
    def forward(ctx, x, w_qk, w_v, w_out, b_out, rotations, padding_mask, spec: LayerSpec):
        batch, seq_len, d_model = x.shape
        d_head = d_model // spec.n_heads
        layout = spec.layout(batch, seq_len, d_head)
        shape = (batch, seq_len, d_head)
        x2d = x.reshape(batch * seq_len, d_model)
        valid = key_validity(padding_mask, batch, seq_len, layout.padded_len, x.device)
        # Returned whole, not as a view: reversible layers write into a branch output.
        out = torch.empty(batch, seq_len, d_model, dtype=x.dtype, device=x.device)
        out2d = out.view(batch * seq_len, d_model)
        if b_out is None:
            out2d.zero_()
        else:
            out2d.copy_(b_out.expand_as(out2d))
        # int32 halves what is kept: positions are < Lp < 2^31.
        orders = torch.empty(
            batch, spec.n_heads, spec.n_hashes, layout.padded_len, dtype=torch.int32
        )
        for h in range(spec.n_heads):
            qk, v = _head_inputs(x2d, w_qk, w_v, h, shape, padding_mask)
            _, order = sort_order(
                qk, rotations[h : h + 1], spec.factors, padding_mask, layout.padded_len
            )
            orders[:, h] = order[:, 0]
            qk, v = pad_to_chunks(qk, v, layout.padded_len)
            head = apply_backend(spec.backend, qk, v, order, valid, layout)[:, :, :seq_len]
            out2d.addmm_(_flat(head), w_out[:, _head_rows(h, d_head)].t())
            del qk, v, head
        ctx.spec = spec
        ctx.has_bias = b_out is not None
        ctx.save_for_backward(x, w_qk, w_v, w_out, orders, padding_mask, valid)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        x, w_qk, w_v, w_out, orders, padding_mask, valid = ctx.saved_tensors
        spec: LayerSpec = ctx.spec
        batch, seq_len, d_model = x.shape
        d_head = d_model // spec.n_heads
        layout = spec.layout(batch, seq_len, d_head)
        shape = (batch, seq_len, d_head)
        wants_x, wants_qk, wants_v, wants_out, wants_bias = ctx.needs_input_grad[:5]
        x2d = x.reshape(batch * seq_len, d_model)
        dy = grad_out.reshape(batch * seq_len, d_model)
        grad_x = torch.zeros_like(x2d) if wants_x else None
        grad_qk = torch.empty_like(w_qk) if wants_qk else None
        grad_v = torch.empty_like(w_v) if wants_v else None
        grad_w_out = torch.empty_like(w_out) if wants_out else None
        needs_attention_backward = wants_x or wants_qk or wants_v
        for h in range(spec.n_heads):
            rows = _head_rows(h, d_head)
            qk, v = _head_inputs(x2d, w_qk, w_v, h, shape, padding_mask)
            qk, v = (t.detach().requires_grad_() for t in pad_to_chunks(qk, v, layout.padded_len))
            order = orders[:, h : h + 1].long()
            with torch.enable_grad():
                head = apply_backend(spec.backend, qk, v, order, valid, layout)
            head_out = head.detach()[:, :, :seq_len]
            if grad_w_out is not None:
                grad_w_out[:, rows] = dy.t() @ _flat(head_out)
            del head_out
            if not needs_attention_backward:
                continue
            # dO of this head, (B, 1, Lp, d_head): the padded tail gets no gradient.
            grad_head = (dy @ w_out[:, rows]).view(batch, seq_len, 1, d_head).transpose(1, 2)
            if layout.padded_len > seq_len:
                grad_head = torch.nn.functional.pad(
                    grad_head, (0, 0, 0, layout.padded_len - seq_len)
                )
            d_qk, d_v = torch.autograd.grad(head, (qk, v), grad_head)
            del head, grad_head, qk, v
            d_qk, d_v = (
                _real_rows(d_qk, seq_len, padding_mask),
                _real_rows(d_v, seq_len, padding_mask),
            )
            if grad_x is not None:
                # Straight into dx: no (B, L, d_model) gradient of qk or v is ever formed.
                grad_x.addmm_(d_qk, w_qk[rows]).addmm_(d_v, w_v[rows])
            if grad_qk is not None:
                grad_qk[rows] = d_qk.t() @ x2d
            if grad_v is not None:
                grad_v[rows] = d_v.t() @ x2d
            del d_qk, d_v
        grad_bias = dy.sum(0) if wants_bias and ctx.has_bias else None
        return (
            None if grad_x is None else grad_x.view_as(x),
            grad_qk,
            grad_v,
            grad_w_out,
            grad_bias,
            None,
            None,
            None,
        )


def _real_rows(grad: torch.Tensor, seq_len: int, padding_mask: torch.Tensor | None) -> torch.Tensor:
    """A head's gradient (B, 1, Lp, d) -> (B·L, d): the padded tail dropped and padded
    positions zeroed, as the backward of ``read_as_zeros`` (torch.where) and of the
    chunk padding give."""
    grad = grad[:, :, :seq_len]
    if padding_mask is not None:
        grad = grad.masked_fill(~padding_mask[:, None, :, None], 0.0)
    return _flat(grad)
