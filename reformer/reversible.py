"""Reversible residual layers (Reformer sec. 3; RevNet, Gomez et al. 2017).

Each layer maps a pair of streams (X1, X2), each (B, L, d_model), to

    Y1 = X1 + F(X2)        F: the attention branch
    Y2 = X2 + G(Y1)        G: the feed-forward branch

and the inputs can be recovered from the outputs: X2 = Y2 - G(Y1), X1 = Y1 - F(X2).
:class:`ReversibleFunction` runs the whole stack without building a graph and keeps only
the last layer's (Y1, Y2). Backward walks the layers from the top, recomputing each
layer's inputs and re-running its branches under autograd one layer at a time, so
activation memory is that of one layer whatever the depth.

The recomputed branches must be the same functions as in the forward: every random draw
(LSH hash rotations, dropout masks) comes from generators the layer owns, whose state is
recorded before each branch and restored before its recomputation. The global RNG is never
touched; after backward each generator is back where it was before backward. Per-call
arguments of the attention branch (a padding mask, other hash rounds, exact attention) are
kept with the stack and given to F again in its recomputation.

To check gradients, the same weights can run the same equations with ordinary autograd
(every layer's activations kept): wrap the call in ``with plain_autograd():``.

Numerics: recovered inputs differ from the true ones by rounding. That is harmless except
where the branch is discontinuous: an LSH bucket (an argmax) can flip for a position lying
on a bucket boundary, more likely the coarser the dtype. In float32 the reversible
gradients matched plain autograd to ~3e-7 (relative) over 6 LSH layers at L = 1024; the
paper and trax accept the same trade.
"""

from __future__ import annotations

import contextlib
import contextvars
import weakref
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from reformer.recompute import AutocastState, non_leaf_view

_PLAIN_AUTOGRAD = contextvars.ContextVar("reformer_plain_autograd", default=False)


@contextlib.contextmanager
def plain_autograd() -> Iterator[None]:
    """Run reversible stacks with ordinary autograd inside this block (same math, same
    random draws, every activation kept). Used by tests to check reversible gradients."""
    token = _PLAIN_AUTOGRAD.set(True)
    try:
        yield
    finally:
        _PLAIN_AUTOGRAD.reset(token)


class ReversibleBlock(Protocol):
    """What a layer must offer to run in a reversible stack."""

    def f(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        """Attention branch, (B, L, d) -> (B, L, d), with the stack's per-call arguments."""

    def g(self, x: torch.Tensor) -> torch.Tensor:
        """Feed-forward branch, (B, L, d) -> (B, L, d)."""

    def f_parameters(self) -> list[nn.Parameter]: ...

    def g_parameters(self) -> list[nn.Parameter]: ...

    def rng_state(self) -> Any:
        """State of every generator the block draws from."""

    def set_rng_state(self, state: Any) -> None: ...


def reversible_stack(
    blocks: Sequence[ReversibleBlock],
    x1: torch.Tensor,
    x2: torch.Tensor,
    *f_args: Any,
    **f_kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``blocks`` reversibly on (X1, X2), each (B, L, d): returns (Y1, Y2) of the top layer.

    Every attention branch is called ``block.f(x, *f_args, **f_kwargs)``, in the forward and
    again in backward's recomputation (arguments that need no gradient: a padding mask,
    switches). Memory-frugal custom backward, unless inside :func:`plain_autograd` or grad
    is off. x1 and x2 may be the same tensor and need not require grad.
    """
    if _PLAIN_AUTOGRAD.get() or not torch.is_grad_enabled():
        for block in blocks:
            x1 = x1 + block.f(x2, *f_args, **f_kwargs)
            x2 = x2 + block.g(x1)
        return x1, x2
    params = [p for block in blocks for p in (*block.f_parameters(), *block.g_parameters())]
    call = _BranchCall(f_args, f_kwargs)
    return ReversibleFunction.apply(x1, x2, tuple(blocks), call, *params)


class _BranchCall:
    """The attention branch's per-call arguments, kept by the forward for the replay."""

    def __init__(self, args: tuple, kwargs: dict[str, Any]) -> None:
        self.args, self.kwargs = args, kwargs

    def f(self, block: ReversibleBlock, x: torch.Tensor) -> torch.Tensor:
        return block.f(x, *self.args, **self.kwargs)


class ReversibleFunction(torch.autograd.Function):
    """(X1, X2) -> (Y1, Y2) through all blocks, saving only (Y1, Y2) and generator states.

    Parameters are passed as inputs so autograd routes their gradients through
    ``backward`` (``torch.autograd.grad`` on them works, and so does a frozen input).
    """

    @staticmethod
    def forward(ctx, x1, x2, blocks, call, *params):
        x1, x2 = x1.detach(), x2.detach()  # no graph is built here (see ChunkedApply)
        states = []
        for block in blocks:
            before_f = block.rng_state()
            y1 = _residual(x1, call.f(block, x2))
            before_g = block.rng_state()
            x2 = _residual(x2, block.g(y1))
            x1 = y1
            states.append((before_f, before_g))
        ctx.blocks = blocks
        ctx.call = call
        ctx.states = states
        ctx.autocast = AutocastState.current(x1.device.type)
        ctx.params = params
        # The top layer's outputs are what backward starts from. They go through the
        # saved-tensor hooks as save_for_backward would (so they are counted, or offloaded),
        # but are held on ctx, so that backward can drop each one as soon as it is used:
        # tensors saved with save_for_backward live until the whole backward ends. Backward
        # overwrites them in place unless the caller still holds an output (checked through
        # these weak references), who must then see it unchanged.
        ctx.top = [_pack(x1.detach()), _pack(x2.detach())]  # detached: no ctx <-> output cycle
        ctx.outputs = (weakref.ref(x1), weakref.ref(x2))
        return x1, x2

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y1, grad_y2):
        y1, y2 = (_unpack(packed) for packed in ctx.top)
        ctx.top = None
        owned = all(ref() is None for ref in ctx.outputs)
        carry = [y1, y2, _zeros_if_none(grad_y1, y1), _zeros_if_none(grad_y2, y2)]
        del y1, y2
        # The incoming gradients belong to the autograd engine: never written in place.
        foreign = {_storage(g) for g in (grad_y1, grad_y2) if g is not None}
        grads: dict[int, torch.Tensor] = {}
        for block, states in zip(reversed(ctx.blocks), reversed(ctx.states), strict=True):
            carry = _layer_backward(
                block, ctx.call, states, carry, ctx.autocast, grads, owned, foreign
            )
            owned = True  # every lower layer's buffers are this backward's own
        _, _, grad_x1, grad_x2 = carry
        param_grads = [grads.get(id(p)) for p in ctx.params]
        return (
            grad_x1 if ctx.needs_input_grad[0] else None,
            grad_x2 if ctx.needs_input_grad[1] else None,
            None,
            None,
            *param_grads,
        )


def _layer_backward(
    block,
    call: _BranchCall,
    states,
    carry: list,
    autocast: AutocastState,
    grads: dict,
    owned: bool,
    foreign: set,
) -> list:
    """[Y1, Y2, dY1, dY2] of one layer -> [X1, X2, dX1, dX2], recomputing its branches
    (F with the forward's per-call arguments ``call``).

    Takes ``carry`` by emptying it, so each (B, L, d) buffer dies as soon as it is used.
    With ``owned`` the layer's outputs Y1, Y2 are this backward's to overwrite: X2 and X1
    are computed as soon as each branch is recomputed, before its backward, into the branch
    output, and Y is freed, so Y and X of a stream are never held at once. Gradients are
    summed into the fresh branch gradient unless its memory is ``foreign`` (the engine's
    incoming gradients).
    """
    y1, y2, grad_y1, grad_y2 = carry
    carry.clear()
    before_f, before_g = states
    after = block.rng_state()
    # G: Y2 = X2 + G(Y1)  =>  X2 = Y2 - G(Y1);  dL/dY1 += G'(Y1)^T dL/dY2.
    block.set_rng_state(before_g)
    y1_in = y1.detach().requires_grad_()
    with torch.enable_grad(), autocast.restore():
        g_out = block.g(non_leaf_view(y1_in))
    if owned:
        x2 = _subtract_(y2, g_out.detach(), y1)
        del y2
    grad_x1 = _sum(_grad(g_out, y1_in, block.g_parameters(), grad_y2, grads), grad_y1, foreign)
    del grad_y1, y1_in
    if not owned:
        x2 = _difference(y2, g_out.detach(), y1)
        del y2
    del g_out
    # F: Y1 = X1 + F(X2)  =>  X1 = Y1 - F(X2);  dL/dX2 = dL/dY2 + F'(X2)^T dL/dX1.
    block.set_rng_state(before_f)
    x2.requires_grad_()
    with torch.enable_grad(), autocast.restore():
        f_out = call.f(block, non_leaf_view(x2))
    if owned:
        x1 = _subtract_(y1, f_out.detach(), x2)
        del y1
    grad_x2 = _sum(_grad(f_out, x2, block.f_parameters(), grad_x1, grads), grad_y2, foreign)
    del grad_y2
    if not owned:
        x1 = _difference(y1.detach(), f_out.detach(), x2)
        del y1
    del f_out
    block.set_rng_state(after)
    return [x1, x2.detach(), grad_x1, grad_x2]


def _subtract_(
    total: torch.Tensor, branch: torch.Tensor, branch_input: torch.Tensor
) -> torch.Tensor:
    """total - branch for a buffer ``total`` the caller owns and is done with, written into
    the branch output, so total's memory is freed as soon as the caller drops it. The
    branch output is overwritten before its backward runs: a branch whose backward reads
    its own output fails autograd's in-place check loudly rather than computing a wrong
    gradient. Into total instead if the branch output shares its input's memory; a new
    tensor if the difference needs a wider dtype."""
    if total.dtype == branch.dtype and _storage(branch) != _storage(branch_input):
        return branch.neg_().add_(total)
    if total.dtype != torch.promote_types(total.dtype, branch.dtype):
        return total - branch
    return total.detach().sub_(branch)


def _pack(tensor: torch.Tensor) -> tuple:
    """``tensor`` through the innermost saved-tensor hooks, as save_for_backward does."""
    hooks = torch._C._autograd._top_saved_tensors_default_hooks(False)
    if hooks is None:
        return None, tensor
    pack, unpack = hooks
    return unpack, pack(tensor)


def _unpack(packed: tuple) -> torch.Tensor:
    unpack, value = packed
    return value if unpack is None else unpack(value)


def _sum(fresh: torch.Tensor, other: torch.Tensor, foreign: set) -> torch.Tensor:
    """fresh + other, written into ``fresh`` (a gradient autograd just made) when its
    memory is not foreign and its dtype holds the sum: one (B, L, d) buffer less."""
    if (
        _storage(fresh) in foreign
        or _storage(fresh) == _storage(other)
        or fresh.dtype != torch.promote_types(fresh.dtype, other.dtype)
    ):
        return fresh + other
    return fresh.add_(other)


def _storage(tensor: torch.Tensor) -> tuple[str, int]:
    return str(tensor.device), tensor.untyped_storage().data_ptr()


def _difference(total: torch.Tensor, branch: torch.Tensor, branch_input: torch.Tensor):
    """total - branch, written into the branch output (whose graph is spent) unless it
    aliases the branch's input or would need a wider dtype: one (B, L, d) buffer less."""
    shares_input = branch.untyped_storage().data_ptr() == branch_input.untyped_storage().data_ptr()
    if shares_input or branch.dtype != torch.promote_types(total.dtype, branch.dtype):
        return total - branch
    return branch.neg_().add_(total)


def _residual(stream: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
    """stream + branch, written into the fresh branch output when that loses nothing (saves
    one (B, L, d) allocation); under autocast the branch may be half precision while the
    stream stays float32, and the sum must be float32 as in plain autograd."""
    if branch.dtype == torch.promote_types(stream.dtype, branch.dtype):
        return branch.add_(stream)
    return stream + branch


def _grad(output, inp, params, grad_output, grads: dict[int, torch.Tensor]) -> torch.Tensor:
    """dL/d inp for output = branch(inp); accumulates parameter gradients into ``grads``."""
    trainable = [p for p in params if p.requires_grad]
    results = torch.autograd.grad(output, [inp, *trainable], grad_output, allow_unused=True)
    for param, grad in zip(trainable, results[1:], strict=True):
        if grad is not None:
            grads[id(param)] = grad if id(param) not in grads else grads[id(param)] + grad
    return results[0] if results[0] is not None else torch.zeros_like(inp)


def _zeros_if_none(grad: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(like) if grad is None else grad
