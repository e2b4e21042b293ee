"""Reversible layers (Reformer sec. 3): the memory-frugal backward gives plain autograd's
gradients, replays every random draw, and leaves the generators as the forward left them."""

from __future__ import annotations

import contextlib

import pytest
import torch

from reformer.config import ReformerConfig
from reformer.dropout import ReplayableDropout
from reformer.model import ReformerLM
from reformer.reversible import plain_autograd, reversible_stack


def _config(**changes) -> ReformerConfig:
    base = dict(
        vocab_size=32,
        d_model=32,
        n_heads=2,
        n_layers=4,
        d_ff=64,
        attention="lsh",
        n_hashes=2,
        bucket_size=8,
        reversible=True,
        dropout=0.1,
        max_seq_len=64,
    )
    return ReformerConfig(**{**base, **changes})


def _rng_states(model: ReformerLM) -> list:
    return [block.rng_state() for block in model.blocks]


def _set_rng_states(model: ReformerLM, states: list) -> None:
    for block, state in zip(model.blocks, states, strict=True):
        block.set_rng_state(state)


def _loss_and_grads(model: ReformerLM, tokens: torch.Tensor, plain: bool):
    model.zero_grad(set_to_none=True)
    if plain:
        with plain_autograd():
            loss = model.loss(tokens)
    else:
        loss = model.loss(tokens)
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}


def _assert_grads_close(got: dict, expected: dict) -> None:
    assert got.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(
            got[name],
            expected[name],
            rtol=1e-9,
            atol=1e-11,
            msg=lambda m, name=name: f"{name}: {m}",
        )


@pytest.mark.parametrize("ff_chunks", [1, 3])
def test_reversible_backward_equals_plain_autograd_lsh_dropout(ff_chunks):
    torch.manual_seed(0)
    model = ReformerLM(_config(ff_chunks=ff_chunks)).double().train()
    tokens = torch.randint(0, 32, (2, 64))  # 64 / bucket 8: many chunks, hashing matters
    start = _rng_states(model)
    plain_loss, plain_grads = _loss_and_grads(model, tokens, plain=True)
    after_plain = _rng_states(model)

    _set_rng_states(model, start)
    rev_loss, rev_grads = _loss_and_grads(model, tokens, plain=False)
    torch.testing.assert_close(rev_loss, plain_loss, rtol=1e-12, atol=0)
    _assert_grads_close(rev_grads, plain_grads)
    # Replay inside backward restores the generators: the next step draws what it would
    # have drawn under plain autograd.
    assert _states_equal(_rng_states(model), after_plain)


def test_grad_check_is_sensitive_to_replay():
    """Without the same draws (fresh rotations and masks) the gradients differ: the
    equality above is not vacuous."""
    torch.manual_seed(0)
    model = ReformerLM(_config()).double().train()
    tokens = torch.randint(0, 32, (2, 64))
    _, first = _loss_and_grads(model, tokens, plain=True)
    _, second = _loss_and_grads(model, tokens, plain=False)  # generators moved on
    assert any(not torch.allclose(first[name], second[name]) for name in first)


def test_input_without_grad_eval_mode_and_autograd_grad():
    torch.manual_seed(1)
    model = ReformerLM(_config(dropout=0.0)).double().eval()
    x = torch.randn(2, 24, 32, dtype=torch.float64)  # requires_grad=False
    blocks = list(model.blocks)
    params = [p for block in blocks for p in block.parameters()]
    states = _rng_states(model)

    with plain_autograd():
        y1, y2 = reversible_stack(blocks, x, x)
    expected = torch.autograd.grad((y1 * y2).sum(), params)
    _set_rng_states(model, states)
    y1r, y2r = reversible_stack(blocks, x, x)
    assert y1r.grad_fn is not None and not x.requires_grad
    got = torch.autograd.grad((y1r * y2r).sum(), params)
    torch.testing.assert_close(y1r, y1, rtol=1e-12, atol=0)
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-9, atol=1e-11)

    _set_rng_states(model, states)
    with torch.no_grad():
        y1n, _ = reversible_stack(blocks, x, x)
    torch.testing.assert_close(y1n, y1, rtol=1e-12, atol=0)


def test_input_gradient_and_frozen_parameters():
    torch.manual_seed(2)
    model = ReformerLM(_config(attention="full", dropout=0.1, n_layers=3)).double().train()
    model.blocks[1].ff.w_in.weight.requires_grad_(False)
    x = torch.randn(1, 16, 32, dtype=torch.float64, requires_grad=True)
    states = _rng_states(model)
    with plain_autograd():
        expected = torch.autograd.grad(sum(reversible_stack(model.blocks, x, x)).sum(), x)
    _set_rng_states(model, states)
    got = torch.autograd.grad(sum(reversible_stack(model.blocks, x, x)).sum(), x)
    torch.testing.assert_close(got[0], expected[0], rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("ff_chunks", [1, 2])
def test_recomputation_keeps_the_forward_autocast(ff_chunks):
    """Backward runs outside the caller's autocast block; the recomputation must still run
    in bfloat16, or the recovered activations and the gradients would be of another model."""
    torch.manual_seed(3)
    model = ReformerLM(_config(attention="full", dropout=0.0, ff_chunks=ff_chunks))
    tokens = torch.randint(0, 32, (2, 32))
    grads = []
    for plain in (True, False):
        model.zero_grad(set_to_none=True)
        with (
            torch.autocast("cpu", dtype=torch.bfloat16),
            plain_autograd() if plain else contextlib.nullcontext(),
        ):
            loss = model.loss(tokens)
        loss.backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    # Recovered inputs differ from the originals by float32 rounding only (~1e-8 here);
    # recomputing in float32 instead of bfloat16 would be off by ~1e-3.
    assert (grads[1] - grads[0]).norm() <= 1e-5 * grads[0].norm()


def test_replayable_dropout_masks_replay_and_scale():
    dropout = ReplayableDropout(0.25, seed=7)
    x = torch.ones(4000)
    state = dropout.get_state()
    first = dropout(x)
    second = dropout(x)
    dropout.set_state(state)
    assert torch.equal(dropout(x), first)
    assert not torch.equal(first, second)
    kept = first != 0
    assert torch.allclose(first[kept], torch.tensor(1 / 0.75))
    assert 0.2 < 1 - kept.float().mean().item() < 0.3
    dropout.eval()
    assert dropout(x) is x


def _states_equal(a: list, b: list) -> bool:
    def same(x, y):
        if isinstance(x, torch.Tensor):
            return torch.equal(x, y)
        if isinstance(x, dict):
            return x.keys() == y.keys() and all(same(x[k], y[k]) for k in x)
        if isinstance(x, (tuple, list)):
            return len(x) == len(y) and all(same(i, j) for i, j in zip(x, y, strict=True))
        return x == y

    return same(a, b)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_reversible_backward_equals_plain_autograd_on_cuda():
    """Dropout masks come from per-device generators; hash rotations from the layer's CPU
    generator. Both must replay on CUDA too."""
    torch.manual_seed(0)
    model = ReformerLM(_config(ff_chunks=2)).double().cuda().train()
    tokens = torch.randint(0, 32, (2, 64), device="cuda")
    start = _rng_states(model)
    plain_loss, plain_grads = _loss_and_grads(model, tokens, plain=True)
    _set_rng_states(model, start)
    rev_loss, rev_grads = _loss_and_grads(model, tokens, plain=False)
    torch.testing.assert_close(rev_loss, plain_loss, rtol=1e-12, atol=0)
    _assert_grads_close(rev_grads, plain_grads)


@pytest.mark.parametrize("hold_outputs", [True, False])
def test_backward_rebuilds_inputs_in_place_only_when_the_outputs_are_dropped(hold_outputs):
    # Backward overwrites the top outputs with the rebuilt inputs when nobody else can see
    # them; an output the caller still holds must read the same after backward, and the
    # gradients must be plain autograd's either way.
    torch.manual_seed(0)
    model = ReformerLM(_config(dropout=0.0, n_layers=3, ff_chunks=2)).double()
    h = torch.randn(2, 24, 32, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(2, 24, 32, dtype=torch.float64)
    grads, states = [], _rng_states(model)
    for plain in (True, False):
        _set_rng_states(model, states)  # both runs draw the same hash rotations
        h.grad = None
        model.zero_grad(set_to_none=True)
        with plain_autograd() if plain else contextlib.nullcontext():
            y1, y2 = reversible_stack(model.blocks, h, h)
        kept = (y1.detach().clone(), y2.detach().clone())
        loss = ((y1 + y2) * weights).sum()
        if not hold_outputs:
            del y1, y2
        loss.backward()
        if hold_outputs:
            torch.testing.assert_close(y1, kept[0], rtol=0, atol=0)
            torch.testing.assert_close(y2, kept[1], rtol=0, atol=0)
        grads.append([h.grad.clone()] + [p.grad.clone() for p in model.blocks.parameters()])
    for got, expected in zip(grads[1], grads[0], strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-11)
