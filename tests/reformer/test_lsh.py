"""LSH attention (Reformer sec. 2): the fast kernel against its obvious twins."""

from __future__ import annotations

import math

import pytest
import torch

from reformer import LSHSelfAttention, ReformerConfig, lsh_attention
from reformer.lsh.dispatch import resolve_backend
from reformer.lsh.hashing import draw_rotations, hash_vectors, resolve_n_buckets
from reformer.lsh.triton.config import TF32X3_PRODUCT_ERROR
from reformer.reference import (
    exact_shared_qk_attention,
    hash_reference,
    lsh_attention_reference,
)
from suites.harness.saved_bytes import saved_bytes

# The torch path runs on every device; reference twins run on the CPU.
DEVICES = [
    "cpu",
    pytest.param(
        "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
    ),
]


def _inputs(batch=2, heads=2, length=16, dim=8, dtype=torch.float64, seed=0, device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    qk = torch.randn(batch, heads, length, dim, generator=gen, dtype=dtype)
    v = torch.randn(batch, heads, length, dim, generator=gen, dtype=dtype)
    return qk.to(device).requires_grad_(), v.to(device).requires_grad_()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("n_hashes", [1, 3])
def test_one_chunk_equals_exact_attention(causal, n_hashes, device):
    qk, v = _inputs(length=24, device=device)
    out = lsh_attention(qk, v, n_hashes=n_hashes, bucket_size=32, causal=causal, seed=1)
    expected = exact_shared_qk_attention(qk, v, causal=causal)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)


GRID = [
    # length, bucket_size, n_hashes, causal, padding, dup_correction
    (16, 4, 2, True, False, True),
    (13, 4, 3, False, True, True),
    (20, 8, 2, True, True, False),
    (9, 4, 1, False, False, True),
    (32, 4, 4, True, True, True),
    (30, 8, 2, False, False, True),
    (8, 8, 2, True, False, True),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("length,bucket_size,n_hashes,causal,padding,dup", GRID)
def test_fast_path_matches_reference(length, bucket_size, n_hashes, causal, padding, dup, device):
    qk, v = _inputs(length=length, dim=6)
    mask = None
    if padding:
        mask = torch.rand(2, length, generator=torch.Generator().manual_seed(5)) > 0.25
        mask[:, 0] = True
    fast_qk, fast_v = (x.detach().to(device).requires_grad_() for x in (qk, v))
    out, buckets = lsh_attention(
        fast_qk,
        fast_v,
        n_hashes=n_hashes,
        bucket_size=bucket_size,
        causal=causal,
        seed=3,
        padding_mask=None if mask is None else mask.to(device),
        dup_correction=dup,
        return_buckets=True,
    )
    ref = lsh_attention_reference(
        qk,
        v,
        buckets.cpu(),
        bucket_size=bucket_size,
        causal=causal,
        padding_mask=mask,
        dup_correction=dup,
    )
    real = torch.ones(2, length, dtype=torch.bool) if mask is None else mask
    real = real[:, None, :, None]
    torch.testing.assert_close(out.cpu() * real, ref * real, rtol=1e-9, atol=1e-9)
    weight = torch.randn_like(ref) * real  # padded queries' outputs are meaningless
    fast_grads = torch.autograd.grad((out * weight.to(device)).sum(), (fast_qk, fast_v))
    ref_grads = torch.autograd.grad((ref * weight).sum(), (qk, v))
    for fast, slow in zip(fast_grads, ref_grads, strict=True):
        torch.testing.assert_close(fast.cpu(), slow, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dup", [True, False])
@pytest.mark.parametrize("n_hashes", [1, 2, 4])
def test_query_that_sees_only_itself_gets_exactly_its_value(n_hashes, dup, device):
    """Under causal attention position 0 sees only itself, in every round: its output is
    exactly its own v, in float32 too (rounds are not merged at the -1e5 self-logit scale,
    where float32 is spaced 0.0078), on every backend (the Triton kernels select v for
    such a row rather than multiply it through tf32x3 tensor-core products)."""
    qk, v = _inputs(length=64, dim=16, dtype=torch.float32, device=device)
    out = lsh_attention(
        qk, v, n_hashes=n_hashes, bucket_size=8, causal=True, seed=1, dup_correction=dup
    )
    assert torch.equal(out[:, :, 0], v[:, :, 0])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dup", [True, False])
@pytest.mark.parametrize("n_hashes", [1, 2, 4])
def test_query_that_sees_only_itself_passes_its_gradient_exactly(n_hashes, dup, device):
    """Backward recomputes position 0's weight on itself from the saved statistics: it must
    be 1 to float32 rounding (a few ulp from summing the rounds' occurrences), so
    dL/dv[0] is dL/dout[0]. With one folded lse at the -1e5 self-logit scale it was off by
    up to 1e-2 without dup correction."""
    qk, v = _inputs(length=64, dim=16, dtype=torch.float32, device=device)
    qk, v = qk.requires_grad_(), v.requires_grad_()
    out = lsh_attention(
        qk, v, n_hashes=n_hashes, bucket_size=8, causal=True, seed=1, dup_correction=dup
    )
    grad_out = torch.zeros_like(out)
    grad_out[:, :, 0] = torch.randn_like(out[:, :, 0])
    out.backward(grad_out)
    bound = 8 * torch.finfo(torch.float32).eps
    if resolve_backend("auto", device, torch.float32, 8, 16) == "triton":
        bound += TF32X3_PRODUCT_ERROR  # the weight reaches dv through one tf32x3 product
    bound *= grad_out.abs().max().item()
    torch.testing.assert_close(v.grad[:, :, 0], grad_out[:, :, 0], rtol=0, atol=bound)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dup", [True, False])
def test_float32_matches_float64_on_the_same_buckets(dup, device):
    """A whole sequence in float32 against float64, bound by float32 rounding alone.

    Each logit q · k̂ / sqrt(D) sums D products and divides by a norm, so its float32
    error is at most about (D + 4)·eps·|q|/sqrt(D). A softmax output moves by at most
    2·max|Δlogit|·max|v| under such logit errors, and summing a window of 2c occurrences
    over R rounds plus the merge adds at most (2c·R + 8)·eps·max|v|. The old merge at the
    self-logit scale missed this by four orders of magnitude (1e-2). Where float32 runs
    through the Triton kernels (CUDA under auto), a product in tl.dot carries up to
    p = TF32X3_PRODUCT_ERROR instead of eps: D of them per logit, 2c per window sum.
    """
    length, dim, chunk, n_hashes = 4096, 32, 32, 4
    qk, v = _inputs(batch=1, length=length, dim=dim, device=device)
    kwargs = dict(
        n_hashes=n_hashes,
        bucket_size=chunk,
        causal=True,
        seed=0,
        dup_correction=dup,
        return_buckets=True,
    )
    out64, buckets64 = lsh_attention(qk.detach(), v.detach(), **kwargs)
    out32, buckets32 = lsh_attention(qk.detach().float(), v.detach().float(), **kwargs)
    assert torch.equal(buckets32, buckets64)  # hashing is float32 in both: same buckets
    eps = torch.finfo(torch.float32).eps
    product = eps
    if resolve_backend("auto", device, torch.float32, chunk, dim) == "triton":
        product = TF32X3_PRODUCT_ERROR
    max_q = float(qk.detach().norm(dim=-1).max())
    logit_error = (dim * product + 4 * eps) * max_q / math.sqrt(dim)
    window = (2 * chunk * n_hashes + 8) * eps + 2 * chunk * (product - eps)
    bound = (2 * logit_error + window) * float(v.detach().abs().max())
    error = float((out32.double() - out64).abs().max())
    assert error <= bound, (error, bound)


def test_duplicate_correction_changes_weights():
    qk, v = _inputs(length=16)
    kwargs = dict(n_hashes=4, bucket_size=4, causal=False, seed=2)
    with_dup = lsh_attention(qk, v, dup_correction=True, **kwargs)
    without = lsh_attention(qk, v, dup_correction=False, **kwargs)
    assert not torch.allclose(with_dup, without)


def test_hashing_matches_reference_flat_and_factorised():
    qk, _ = _inputs(length=50, dim=8)
    gen = torch.Generator().manual_seed(0)
    for factors in [(8,), (4, 6)]:
        rotations = draw_rotations(gen, n_heads=2, d_head=8, n_hashes=3, factors=factors)
        fast = hash_vectors(qk.detach(), rotations, factors)
        assert torch.equal(fast, hash_reference(qk.detach(), rotations, factors))
        assert int(fast.max()) < math.prod(factors)


def test_default_bucket_counts():
    assert resolve_n_buckets(None, 1024, 64) == (32,)
    assert resolve_n_buckets(None, 1000, 64) == (32,)  # 2 * ceil(1000 / 64)
    assert resolve_n_buckets(None, 16384, 64) == (32, 16)  # factorised past 128
    factors = resolve_n_buckets(None, 1 << 20, 64)
    assert len(factors) == 2 and math.prod(factors) >= 2 * (1 << 20) // 64
    assert resolve_n_buckets((4, 8), 99, 64) == (4, 8)


@pytest.mark.parametrize("device", DEVICES)
def test_causal_values_from_the_future_do_not_leak(device):
    qk, v = _inputs(length=32, device=device)
    t = 17
    kwargs = dict(n_hashes=2, bucket_size=4, causal=True, seed=4)
    out = lsh_attention(qk, v, **kwargs)
    v2 = v.detach().clone()
    v2[:, :, t:] = torch.randn_like(v2[:, :, t:])
    torch.testing.assert_close(
        lsh_attention(qk, v2, **kwargs)[:, :, :t], out[:, :, :t], rtol=0, atol=0
    )
    grads = torch.autograd.grad(out[:, :, :t].sum(), (qk, v))
    assert torch.count_nonzero(grads[0][:, :, t:]) == 0
    assert torch.count_nonzero(grads[1][:, :, t:]) == 0
    assert torch.count_nonzero(grads[0][:, :, :t]) > 0


def test_causal_one_chunk_future_queries_do_not_leak():
    qk, v = _inputs(length=20)
    t = 9
    kwargs = dict(n_hashes=2, bucket_size=32, causal=True, seed=4)
    out = lsh_attention(qk, v, **kwargs)
    qk2 = qk.detach().clone()
    qk2[:, :, t:] = torch.randn_like(qk2[:, :, t:])
    torch.testing.assert_close(lsh_attention(qk2, v, **kwargs)[:, :, :t], out[:, :, :t])


def test_same_seed_same_buckets_different_seed_different_buckets():
    qk, v = _inputs(length=64)
    kwargs = dict(n_hashes=2, bucket_size=8, causal=True, return_buckets=True)
    out_a, buckets_a = lsh_attention(qk, v, seed=7, **kwargs)
    out_b, buckets_b = lsh_attention(qk, v, seed=7, **kwargs)
    _, buckets_c = lsh_attention(qk, v, seed=8, **kwargs)
    assert torch.equal(buckets_a, buckets_b) and torch.equal(out_a, out_b)
    assert not torch.equal(buckets_a, buckets_c)


def test_module_redraws_rotations_and_replays_from_generator_state():
    torch.manual_seed(0)
    cfg = ReformerConfig(d_model=16, n_heads=2, n_hashes=2, bucket_size=4, seed=3)
    layer = LSHSelfAttention(cfg, layer_idx=1)
    x = torch.randn(1, 32, 16)
    state = layer.generator.get_state()
    global_state = torch.get_rng_state()
    first, second = layer(x), layer(x)
    assert torch.equal(torch.get_rng_state(), global_state)  # never touches the global RNG
    assert not torch.allclose(first, second)  # fresh rotations on every call
    layer.generator.set_state(state)
    assert torch.equal(layer(x), first)
    twin = LSHSelfAttention(cfg, layer_idx=1)
    twin.load_state_dict(layer.state_dict())
    assert torch.equal(twin(x), first)  # the layer's generator is fixed by (seed, layer_idx)
    other = LSHSelfAttention(cfg, layer_idx=2)
    other.load_state_dict(layer.state_dict())
    assert not torch.equal(other(x), first)


@pytest.mark.parametrize("backend", ["torch", "auto"])
def test_a_bucket_size_past_the_sequence_runs_as_one_chunk_covering_it(backend):
    """bucket_size=10**9 at L = 64 computes what bucket_size=64 does (one chunk per round
    holds every position either way), without padding the sequence out to 10**9 positions
    (128 GB of buffers). n_buckets and the rotations are given, as bucket_size would
    otherwise set a different default number of buckets."""
    qk, v = _inputs(length=64, dim=8, dtype=torch.float32)
    rotations = draw_rotations(
        torch.Generator().manual_seed(0), n_heads=2, d_head=8, n_hashes=2, factors=(4,)
    )
    call = dict(n_hashes=2, causal=True, rotations=rotations, backend=backend)
    huge = lsh_attention(qk, v, bucket_size=10**9, **call)
    assert torch.equal(huge, lsh_attention(qk, v, bucket_size=64, **call))


@pytest.mark.parametrize("causal", [True, False])
def test_a_bucket_size_past_the_sequence_matches_the_reference(causal):
    """L = 20, bucket_size = 32: the reference pads the sequence to one 32-slot chunk per
    round; lsh_attention runs a 20-slot chunk: the same function."""
    qk, v = _inputs(length=20, dim=6)
    mask = torch.ones(2, 20, dtype=torch.bool)
    mask[1, 17:] = False
    out, buckets = lsh_attention(
        qk,
        v,
        n_hashes=3,
        bucket_size=32,
        causal=causal,
        seed=4,
        padding_mask=mask,
        return_buckets=True,
    )
    ref = lsh_attention_reference(qk, v, buckets, bucket_size=32, causal=causal, padding_mask=mask)
    real = mask[:, None, :, None]
    torch.testing.assert_close(out * real, ref * real, rtol=1e-10, atol=1e-10)


def test_gradcheck_float64():
    qk, v = _inputs(batch=1, heads=1, length=10, dim=4)
    mask = torch.tensor([[True] * 8 + [False] * 2])

    def fn(qk, v):
        return lsh_attention(
            qk, v, n_hashes=2, bucket_size=4, causal=True, seed=0, padding_mask=mask
        )

    assert torch.autograd.gradcheck(fn, (qk, v), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_padded_keys_get_zero_weight(device):
    qk, v = _inputs(length=24, device=device)
    mask = torch.ones(2, 24, dtype=torch.bool, device=device)
    mask[0, 5:9] = False
    mask[1, 20:] = False
    out = lsh_attention(qk, v, n_hashes=3, bucket_size=4, causal=False, seed=0, padding_mask=mask)
    # d out_i / d v_j is the weight of key j for query i.
    (grad_v,) = torch.autograd.grad((out * mask[:, None, :, None]).sum(), (v,))
    assert torch.count_nonzero(grad_v.transpose(1, 2)[~mask]) == 0
    assert torch.count_nonzero(grad_v.transpose(1, 2)[mask]) > 0


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_finite(dtype, device):
    qk, v = _inputs(batch=1, heads=2, length=4096, dim=32, dtype=dtype, device=device)
    out = lsh_attention(qk, v, n_hashes=2, bucket_size=64, causal=True, seed=0)
    out.float().square().sum().backward()
    for tensor in (out, qk.grad, v.grad):
        assert tensor.dtype == dtype and torch.isfinite(tensor).all()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_length_not_a_multiple_of_the_chunk(dtype, device):
    """Padded positions are zero rows; their unit keys must be 0, not 0/0 (F.normalize's
    eps is 0 in float16), or the zero-weight pairs still turn every gradient into NaN."""
    qk, v = _inputs(batch=1, length=13, dtype=dtype, device=device)
    out = lsh_attention(qk, v, n_hashes=2, bucket_size=8, causal=False, seed=0)
    out.float().sum().backward()
    for tensor in (out, qk.grad, v.grad):
        assert torch.isfinite(tensor).all()


def test_saved_for_backward_is_linear_in_length():
    def saved(length):
        qk, v = _inputs(batch=1, heads=2, length=length, dim=16, dtype=torch.float32)
        n_bytes, _ = saved_bytes(
            lambda: lsh_attention(qk, v, n_hashes=4, bucket_size=16, causal=True, seed=0)
        )
        return n_bytes

    small, large = saved(512), saved(4096)
    slope = math.log(large / small) / math.log(8)
    assert slope < 1.05, slope


@pytest.mark.parametrize(
    "kwargs,field",
    [
        (dict(n_buckets=7), "n_buckets"),
        (dict(n_buckets=(4, 3)), "n_buckets"),
        (dict(n_hashes=0), "n_hashes"),
        (dict(bucket_size=0), "bucket_size"),
        (dict(padding_mask=torch.ones(2, 16)), "padding_mask"),
        (dict(padding_mask=torch.ones(2, 15, dtype=torch.bool)), "padding_mask"),
        (dict(seed=None), "seed"),
        (dict(rotations=torch.randn(2, 8, 2, 3)), "rotations"),
    ],
)
def test_bad_input_names_the_field(kwargs, field):
    qk, v = _inputs()
    call = dict(n_hashes=2, bucket_size=4, causal=True, seed=0)
    call.update(kwargs)
    with pytest.raises(ValueError, match=field):
        lsh_attention(qk, v, **call)


def test_mismatched_shapes_and_dtypes_are_rejected():
    qk, v = _inputs()
    with pytest.raises(ValueError, match="qk"):
        lsh_attention(qk, v[:, :, :8], n_hashes=1, bucket_size=4, seed=0)
    with pytest.raises(ValueError, match="dtype"):
        lsh_attention(qk, v.float(), n_hashes=1, bucket_size=4, seed=0)
    with pytest.raises(ValueError, match="qk"):
        lsh_attention(qk[0], v[0], n_hashes=1, bucket_size=4, seed=0)


# Per (batch, head) and round: 32 padded positions × a window of 8 = 256 logits.
@pytest.mark.parametrize("slice_elements", [1 << 22, 768, 512, 64])
def test_slicing_policies_agree_with_reference(slice_elements):
    """Every grouping the slice budget can choose (the whole batch, batch rows, heads of one
    row, blocks of chunks) computes the same function: force each on a small case and
    check against the reference."""
    qk, v = _inputs(batch=2, heads=3, length=30, dim=4)
    mask = torch.ones(2, 30, dtype=torch.bool)
    mask[1, 3:6] = False
    out, buckets = lsh_attention(
        qk,
        v,
        n_hashes=3,
        bucket_size=4,
        causal=True,
        seed=9,
        padding_mask=mask,
        return_buckets=True,
        slice_elements=slice_elements,
    )
    ref = lsh_attention_reference(qk, v, buckets, bucket_size=4, causal=True, padding_mask=mask)
    real = mask[:, None, :, None]
    torch.testing.assert_close(out * real, ref * real, rtol=1e-9, atol=1e-9)
    weight = torch.randn_like(out) * real
    for fast, slow in zip(
        torch.autograd.grad((out * weight).sum(), (qk, v)),
        torch.autograd.grad((ref * weight).sum(), (qk, v)),
        strict=True,
    ):
        torch.testing.assert_close(fast, slow, rtol=1e-9, atol=1e-9)
