"""The contract every layer in ``reformer.attention.ATTENTION_REGISTRY`` keeps.

Parametrised by the registry's keys, so a new attention is checked without editing this
file: x (B, L, d_model) -> (B, L, d_model) in x's dtype; a padded key gets no weight from a
real query; with ``causal`` no output depends on a later input; and a call leaves the
global RNG where it was (layers draw from their own generators).

Dependence is measured by gradients: d out[i] / d x[j] is zero exactly when position j
cannot reach position i. (LSH's bucket assignment is discrete and has no gradient; which
keys share a chunk is covered by the LSH tests against the reference.)
"""

from __future__ import annotations

import pytest
import torch

from reformer.attention import ATTENTION_REGISTRY, build_attention
from reformer.config import ReformerConfig

BATCH, LENGTH, D_MODEL = 2, 32, 16
NAMES = sorted(ATTENTION_REGISTRY)


def _layer(name: str, *, causal: bool = True, dtype: torch.dtype = torch.float64):
    config = ReformerConfig(
        attention=name, d_model=D_MODEL, n_heads=2, n_hashes=2, bucket_size=4, causal=causal, seed=5
    )
    torch.manual_seed(0)
    return build_attention(config).to(dtype)


def _input(dtype: torch.dtype = torch.float64) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(BATCH, LENGTH, D_MODEL, generator=generator).to(dtype).requires_grad_()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_shape_and_dtype_are_kept(name, dtype):
    x = _input(dtype)
    out = _layer(name, dtype=dtype)(x)
    assert out.shape == x.shape and out.dtype == dtype
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", NAMES)
def test_no_output_depends_on_a_later_input(name):
    x = _input()
    t = 19
    out = _layer(name, causal=True)(x)
    (grad,) = torch.autograd.grad(out[:, :t].sum(), (x,))
    assert torch.count_nonzero(grad[:, t:]) == 0
    assert torch.count_nonzero(grad[:, :t]) > 0


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("causal", [True, False])
def test_padded_keys_reach_no_real_query(name, causal):
    x = _input()
    mask = torch.ones(BATCH, LENGTH, dtype=torch.bool)
    mask[0, 5:9] = False  # a hole in the middle
    mask[1, 24:] = False  # right padding
    out = _layer(name, causal=causal)(x, padding_mask=mask)
    (grad,) = torch.autograd.grad((out * mask[..., None]).sum(), (x,))
    assert torch.count_nonzero(grad[~mask]) == 0
    assert torch.count_nonzero(grad[mask]) > 0


@pytest.mark.parametrize("name", NAMES)
def test_forward_and_backward_leave_the_global_rng_alone(name):
    layer = _layer(name)
    x = _input()
    state = torch.get_rng_state()
    layer(x).sum().backward()
    assert torch.equal(torch.get_rng_state(), state)
