"""Bad or degenerate input to the model API: switches that are not bools are refused,
empty input gives empty output, a wrong width is a ValueError naming the expected shape."""

from __future__ import annotations

import pytest
import torch

from baselines import TransformerLM
from reformer import LSHSelfAttention, ReformerLM, lsh_attention
from reformer.attention import build_attention
from reformer.config import PRESETS
from reformer.flops import model_flops
from reformer.reference import exact_shared_qk_attention

DEBUG = PRESETS["debug"]


@pytest.mark.parametrize("field", ["causal", "reversible", "dup_correction"])
@pytest.mark.parametrize("value", ["no", "false", 0, 1, None])
def test_config_switches_accept_only_bools(field, value):
    with pytest.raises(ValueError, match=f"{field}=.* must be True or False"):
        DEBUG.replace(**{field: value})


@pytest.mark.parametrize("switch", ["causal", "dup_correction", "return_buckets"])
def test_lsh_attention_switches_accept_only_bools(switch):
    qk, v = torch.randn(2, 1, 1, 8, 4).unbind(0)
    with pytest.raises(ValueError, match=f"{switch}='no' must be True or False"):
        lsh_attention(qk, v, n_hashes=1, bucket_size=4, seed=0, **{switch: "no"})


def test_other_switches_accept_only_bools():
    qk = torch.randn(1, 1, 4, 4)
    with pytest.raises(ValueError, match="causal='no'"):
        exact_shared_qk_attention(qk, qk, causal="no")
    with pytest.raises(ValueError, match="backward='yes'"):
        model_flops(DEBUG, 64, backward="yes")


@pytest.mark.parametrize("shape", [(0, 2, 16, 8), (2, 2, 0, 8), (2, 0, 16, 8)])
@pytest.mark.parametrize("causal", [True, False])
def test_empty_input_gives_empty_output_and_gradients(shape, causal):
    qk = torch.randn(*shape, requires_grad=True)
    v = torch.randn(*shape[:3], 6, requires_grad=True)
    out, buckets = lsh_attention(
        qk, v, n_hashes=2, bucket_size=4, seed=0, causal=causal, return_buckets=True
    )
    assert out.shape == (*shape[:3], 6) and buckets.shape == (shape[0], shape[1], 2, shape[2])
    out.sum().backward()
    assert qk.grad.shape == qk.shape and v.grad.shape == v.shape


def test_a_head_width_of_zero_is_refused():
    with pytest.raises(ValueError, match="head width D >= 1"):
        lsh_attention(
            torch.randn(1, 1, 8, 0), torch.randn(1, 1, 8, 0), n_hashes=1, bucket_size=4, seed=0
        )


@pytest.mark.parametrize("attention", ["lsh", "full", "sdpa"])
@pytest.mark.parametrize("reversible", [True, False])
def test_a_batch_of_no_sequences_gives_no_logits(attention, reversible):
    model = ReformerLM(DEBUG.replace(attention=attention, reversible=reversible, ff_chunks=2))
    logits = model(torch.zeros(0, 16, dtype=torch.long))
    assert logits.shape == (0, 16, DEBUG.vocab_size)
    baseline = TransformerLM(DEBUG.replace(attention="sdpa"))
    assert baseline(torch.zeros(0, 16, dtype=torch.long)).shape == (0, 16, DEBUG.vocab_size)


@pytest.mark.parametrize("attention", ["lsh", "full", "sdpa"])
@pytest.mark.parametrize("shape", [(1, 16, 33), (16, 32), (1, 1, 16, 32)])
def test_an_attention_layer_of_the_wrong_width_names_the_expected_shape(attention, shape):
    layer = build_attention(DEBUG.replace(attention=attention))
    with pytest.raises(ValueError, match=r"x must be \(B, L, d_model=32\); got "):
        layer(torch.randn(*shape))


def test_an_lsh_layer_on_no_positions_gives_no_positions():
    layer = LSHSelfAttention(DEBUG)
    assert layer(torch.randn(2, 0, DEBUG.d_model)).shape == (2, 0, DEBUG.d_model)


@pytest.mark.parametrize("causal", [True, False])
def test_an_all_false_padding_mask_gives_zeros_not_nan(causal):
    torch.manual_seed(0)
    qk = torch.randn(2, 2, 16, 8, requires_grad=True)
    # Large values: a row that sees no key must not scale its gradient by 1/sum (~1e38),
    # which overflowed to inf against such values (and inf · 0 weight is NaN).
    v = (100 * torch.randn(2, 2, 16, 8)).requires_grad_()
    mask = torch.zeros(2, 16, dtype=torch.bool)
    out = lsh_attention(qk, v, n_hashes=2, bucket_size=4, seed=0, causal=causal, padding_mask=mask)
    out.sum().backward()
    assert torch.equal(out, torch.zeros_like(out))
    # The output is 0 whatever the inputs: so is every gradient.
    assert torch.equal(qk.grad, torch.zeros_like(qk)) and torch.equal(v.grad, torch.zeros_like(v))
