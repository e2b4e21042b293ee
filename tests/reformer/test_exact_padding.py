"""NaN and inf at padded positions in the dense (exact) attention paths: the "full" and
"sdpa" attentions (separate QK, forward and decoding steps) and the LSH layer's exact
mode (shared QK). ``reformer.exact.finite_padding`` reads them as 0, so no real output and
no gradient at a real position sees them; finite inputs are untouched (the agreement tests
in test_call_arguments.py still hold bit for bit)."""

from __future__ import annotations

import pytest
import torch

from reformer import LSHSelfAttention, ReformerConfig
from reformer.exact import exact_attention
from tests.reformer.nonfinite_cases import NON_FINITE, garbage_like

B, H, T, D = 2, 2, 12, 8


def _mask() -> torch.Tensor:
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[0, 3:5] = False  # a hole
    mask[1, 9:] = False  # right padding
    return mask


def _dirty(x: torch.Tensor, padded: torch.Tensor) -> torch.Tensor:
    """x with NaN, inf and -inf at the padded positions (``padded`` broadcasts to x)."""
    return torch.where(padded, garbage_like(x, NON_FINITE), x)


def _grads(fn, inputs, weight):
    inputs = [x.clone().requires_grad_() for x in inputs]
    out = fn(*inputs)
    grads = torch.autograd.grad((out * weight).sum(), inputs)
    return out.detach(), grads


def _check(fn, inputs, dirty_inputs, real_out, real_in):
    """Real outputs and the gradients at real positions agree bit for bit and are finite;
    every gradient is finite."""
    weight = torch.randn(fn(*inputs).shape, generator=torch.Generator().manual_seed(1))
    weight = weight * real_out
    clean_out, clean_grads = _grads(fn, inputs, weight)
    dirty_out, dirty_grads = _grads(fn, dirty_inputs, weight)
    assert torch.isfinite(dirty_out * real_out).all()
    torch.testing.assert_close(dirty_out * real_out, clean_out * real_out, rtol=0, atol=0)
    for dirty, clean in zip(dirty_grads, clean_grads, strict=True):
        assert torch.isfinite(dirty).all()
        torch.testing.assert_close(dirty * real_in, clean * real_in, rtol=0, atol=0)


@pytest.mark.parametrize("sdpa", [False, True])
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("n_new", [T, 1])
def test_separate_qk_padded_nonfinite_reaches_no_real_output(sdpa, causal, n_new):
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(B, H, n_new, D, generator=gen)
    k, v = (torch.randn(B, H, T, D, generator=gen) for _ in range(2))
    mask = _mask()
    padded = ~mask[:, None, :, None]
    dirty = [_dirty(q, padded[:, :, -n_new:]), _dirty(k, padded), _dirty(v, padded)]

    def fn(q, k, v):
        return exact_attention(q, k, v, causal=causal, padding_mask=mask, sdpa=sdpa)

    real = mask[:, None, :, None]
    _check(fn, [q, k, v], dirty, real[:, :, -n_new:], real)


@pytest.mark.parametrize("causal", [True, False])
def test_lsh_exact_mode_padded_nonfinite_reaches_no_real_output(causal):
    config = ReformerConfig(
        attention="lsh", d_model=16, n_heads=2, n_hashes=2, bucket_size=4, causal=causal, seed=0
    )
    layer = LSHSelfAttention(config)
    gen = torch.Generator().manual_seed(0)
    qk, v = (torch.randn(B, 2, T, 8, generator=gen) for _ in range(2))
    mask = _mask()
    padded = ~mask[:, None, :, None]

    def fn(qk, v):
        return layer.attend(qk, v, mask, exact=True)  # (B, T, d_model)

    _check(fn, [qk, v], [_dirty(qk, padded), _dirty(v, padded)], mask[..., None], ~padded)
