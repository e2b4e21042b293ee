"""Local attention (reformer.lsh.local) against its O(L²) twin, on every CPU backend, and
the promises that make it a control for hashing: no hash, no sort, one round's cost."""

from __future__ import annotations

import pytest
import torch

from reformer import ReformerConfig, ReformerLM
from reformer.generate import incremental_logits
from reformer.lsh import attention as lsh_module
from reformer.lsh.dispatch import cpu_kernel_reason
from reformer.lsh.local import LocalSelfAttention, local_attention, local_window
from reformer.reference import local_attention_reference, lsh_attention_reference

CPU_KERNEL = pytest.mark.skipif(
    cpu_kernel_reason() is not None, reason=f"no fused CPU kernel: {cpu_kernel_reason()}"
)
CASES = [
    # length, bucket_size, causal, padded
    (37, 8, True, True),  # not a multiple of the chunk, a hole and right padding
    (37, 8, False, True),  # the first chunk looks back to the last
    (32, 8, False, False),
    (5, 8, True, False),  # one chunk shorter than bucket_size: no look-back
    (24, 6, True, False),  # a chunk that is not a power of two
]


def _inputs(length, padded, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    qk = torch.randn(2, 3, length, 4, generator=gen, dtype=torch.float64)
    v = torch.randn(2, 3, length, 5, generator=gen, dtype=torch.float64)
    mask = None
    if padded:
        mask = torch.ones(2, length, dtype=torch.bool)
        mask[0, 2:4] = False
        mask[1, length - 3 :] = False
    weight = torch.randn(v.shape, generator=gen, dtype=torch.float64)
    if mask is not None:
        weight = weight * mask[:, None, :, None]
    return qk.to(dtype), v.to(dtype), mask, weight.to(dtype)


def _output_and_grads(fn, qk, v, weight):
    qk, v = qk.clone().requires_grad_(), v.clone().requires_grad_()
    out = fn(qk, v)
    grads = torch.autograd.grad((out * weight).sum(), (qk, v))
    real = weight.ne(0).any(-1, keepdim=True)
    return [(out * real).detach(), *grads]


@pytest.mark.parametrize("length,bucket_size,causal,padded", CASES)
def test_torch_path_matches_the_reference_with_gradients(length, bucket_size, causal, padded):
    qk, v, mask, weight = _inputs(length, padded)
    options = dict(bucket_size=bucket_size, causal=causal, padding_mask=mask)
    fast = _output_and_grads(
        lambda a, b: local_attention(a, b, backend="torch", **options), qk, v, weight
    )
    slow = _output_and_grads(lambda a, b: local_attention_reference(a, b, **options), qk, v, weight)
    for got, expected in zip(fast, slow, strict=True):
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-9)


@CPU_KERNEL
@pytest.mark.parametrize("length,bucket_size,causal,padded", CASES)
def test_cpu_kernel_matches_the_reference_with_gradients(length, bucket_size, causal, padded):
    qk, v, mask, weight = _inputs(length, padded)
    options = dict(bucket_size=bucket_size, causal=causal, padding_mask=mask)
    fast = _output_and_grads(
        lambda a, b: local_attention(a.float(), b.float(), backend="cpu", **options).double(),
        qk,
        v,
        weight,
    )
    slow = _output_and_grads(lambda a, b: local_attention_reference(a, b, **options), qk, v, weight)
    for got, expected in zip(fast, slow, strict=True):
        torch.testing.assert_close(got, expected, rtol=0, atol=2e-5)


def test_the_reference_is_lsh_with_one_bucket_in_position_order():
    """Two twins written independently agree: local attention is one LSH round in which
    every position hashes to the same bucket (so the sort keeps position order)."""
    qk, v, mask, _ = _inputs(37, padded=True)
    buckets = torch.zeros(2, 3, 1, 37, dtype=torch.long)
    for causal in (True, False):
        lsh = lsh_attention_reference(
            qk, v, buckets, bucket_size=8, causal=causal, padding_mask=mask
        )
        local = local_attention_reference(qk, v, bucket_size=8, causal=causal, padding_mask=mask)
        real = mask[:, None, :, None]
        torch.testing.assert_close(lsh * real, local * real, rtol=0, atol=1e-12)


def test_no_key_more_than_one_chunk_back_reaches_a_query():
    qk, v, _, _ = _inputs(32, padded=False)
    v = v.clone().requires_grad_()
    out = local_attention(qk, v, bucket_size=8, causal=True, backend="torch")
    (grad,) = torch.autograd.grad(out[:, :, 27].sum(), (v,))  # chunk 3 sees chunks 2 and 3
    assert torch.count_nonzero(grad[:, :, :16]) == 0
    # Every earlier key of chunks 2 and 3 is seen; itself (the self logit) gets no weight.
    assert torch.count_nonzero(grad[:, :, 16:27].abs().sum(-1)) == 2 * 3 * 11
    assert torch.count_nonzero(grad[:, :, 27:]) == 0


def test_it_neither_hashes_nor_sorts(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("local attention must not hash or sort")

    monkeypatch.setattr(lsh_module, "hash_vectors", refuse)
    monkeypatch.setattr(lsh_module, "draw_rotations", refuse)
    monkeypatch.setattr(torch, "argsort", refuse)
    monkeypatch.setattr(torch, "sort", refuse)
    config = ReformerConfig(attention="local", d_model=16, n_heads=2, bucket_size=4, seed=3)
    layer = LocalSelfAttention(config).double()
    state = layer.generator.get_state()
    layer(torch.randn(2, 20, 16, dtype=torch.float64)).sum().backward()
    assert torch.equal(layer.generator.get_state(), state)


def test_a_model_decodes_token_by_token_as_its_forward_computes():
    config = ReformerConfig(
        attention="local",
        vocab_size=16,
        d_model=16,
        n_heads=2,
        n_layers=2,
        d_ff=32,
        bucket_size=4,
        max_seq_len=32,
    )
    torch.manual_seed(0)
    model = ReformerLM(config).double().eval()
    tokens = torch.randint(0, 16, (2, 23), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        forward = model(tokens)[:, 2:]
    stepped = incremental_logits(model, tokens, prompt_len=3)
    torch.testing.assert_close(stepped, forward, rtol=0, atol=1e-10)


def test_the_decoding_window_is_the_forward_window():
    assert local_window(0, 4) == (0, 0)
    assert local_window(5, 4) == (0, 5)
    assert local_window(8, 4) == (4, 8)
    assert local_window(11, 4) == (4, 11)


def test_per_call_hash_rounds_are_refused_with_the_reason():
    config = ReformerConfig(attention="local", d_model=16, n_heads=2, bucket_size=4)
    layer = LocalSelfAttention(config)
    with pytest.raises(ValueError, match=r"n_hashes=2.*attention='local'"):
        layer(torch.randn(1, 8, 16), n_hashes=2)
    model = ReformerLM(config.replace(n_layers=1, vocab_size=8, max_seq_len=8))
    with pytest.raises(ValueError, match=r"n_hashes=2.*attention='local'"):
        model(torch.zeros(1, 8, dtype=torch.long), n_hashes=2)


@pytest.mark.parametrize("bucket_size", [0, -1, 2.5])
def test_bad_bucket_size_names_the_field(bucket_size):
    with pytest.raises(ValueError, match="bucket_size"):
        local_attention(torch.randn(1, 1, 8, 4), torch.randn(1, 1, 8, 4), bucket_size=bucket_size)


def test_exact_mode_is_the_lsh_layers_exact_mode():
    config = ReformerConfig(attention="local", d_model=16, n_heads=2, bucket_size=4)
    torch.manual_seed(0)
    local = LocalSelfAttention(config).double()
    lsh = lsh_module.LSHSelfAttention(config.replace(attention="lsh")).double()
    lsh.load_state_dict(local.state_dict())
    x = torch.randn(2, 20, 16, dtype=torch.float64)
    torch.testing.assert_close(local(x, exact=True), lsh(x, exact=True), rtol=0, atol=0)


def test_empty_input_gives_an_empty_output():
    out = local_attention(torch.randn(2, 3, 0, 4), torch.randn(2, 3, 0, 5), bucket_size=4)
    assert out.shape == (2, 3, 0, 5)
