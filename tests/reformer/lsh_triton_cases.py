"""The Triton LSH kernels against the reference twin and the torch path.

Not collected by the main run (the name has no test_ prefix): ``test_lsh_triton.py`` runs
this module in a child process with TRITON_INTERPRET=1 (Triton's CPU interpreter), which
must be set before triton is imported; on a machine with CUDA it runs it again on the GPU.
Shapes are small: the interpreter executes every program in numpy.

Tolerances. float32: rounding alone, at most about (2c·R + 16)·eps + (D + 2c)·p of the
largest reference value: window sums over R rounds and the merge in float32, and the
longest chains of tl.dot products (a D-term logit, a 2c-term window product) at
p = TF32X3_PRODUCT_ERROR each, the GPU's tf32x3 worst case (2^-19, not the 2^-24 of a
float32 product). Under the interpreter tl.dot emulates tf32x3's operand split, so these
cases see the device's rounding, not numpy's exact float32 matmul. float16 and
bfloat16 follow flash-attention's rule: the kernel's error against float64 is at most twice
that of the plain low-precision implementation (the torch path in the same dtype), plus
one unit of the dtype's rounding.
"""

from __future__ import annotations

import os

import pytest
import torch

from reformer import lsh_attention
from reformer.lsh.triton.config import TF32X3_PRODUCT_ERROR
from reformer.reference import lsh_attention_reference
from suites.tools.triton_aot import DEVICE_CASES
from tests.reformer.nonfinite_cases import (
    check_future_values_reach_no_earlier_query,
    check_nan_reaches_the_queries_that_may_see_it,
    check_padded_contents_reach_nothing,
)

INTERPRETING = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
DEVICE = "cpu" if INTERPRETING else "cuda"
DIM = 6  # d_head: not a power of two, so the kernels' padded lanes are exercised


def _upcast_bfloat16_dot_operands() -> None:
    """Triton's interpreter stores bfloat16 as uint16 and its tl.dot multiplies those bit
    patterns (Triton 3.9's interpreter does not support bfloat16).
    Upcast bfloat16 operands to float32 first: exact, and what the GPU's bfloat16 MMA
    computes (exact products, float32 accumulation). Test-only; compiled kernels are
    untouched."""
    import triton.language as tl
    from triton.runtime import interpreter

    original = interpreter.InterpreterBuilder.create_dot

    def create_dot(self, a, b, *args):
        a, b = (
            self.cast_impl(x, tl.float32) if x.dtype.scalar == tl.bfloat16 else x for x in (a, b)
        )
        return original(self, a, b, *args)

    interpreter.InterpreterBuilder.create_dot = create_dot


def _emulate_device_dot_precision() -> None:
    """Make the interpreter's tl.dot round float32 operands as the GPU's tensor cores do.

    The interpreter multiplies float32 tiles exactly and ignores ``input_precision``; on
    sm_80/sm_90 "tf32" keeps 11 significant bits of each operand and "tf32x3" splits each
    operand into a TF32 head and a TF32 tail and sums head·head + head·tail + tail·head
    (about 22 of 24 bits). Without this, a float32 test that passes here can fail on the
    device. Test-only; compiled kernels are untouched."""
    import numpy as np
    import triton.language as tl
    from triton._C.libtriton import ir
    from triton.runtime import interpreter

    def tf32(x):  # round to nearest (ties away from zero) to 10 stored mantissa bits
        bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
        return ((bits + np.uint32(0x1000)) & np.uint32(0xFFFFE000)).view(np.float32)

    original = interpreter.InterpreterBuilder.create_dot

    def create_dot(self, a, b, d, input_precision, max_num_imprecise_acc):
        fp32 = a.dtype.scalar == tl.float32 and b.dtype.scalar == tl.float32
        if not fp32 or input_precision not in (
            ir.INPUT_PRECISION.TF32,
            ir.INPUT_PRECISION.TF32x3,
        ):
            return original(self, a, b, d, input_precision, max_num_imprecise_acc)
        a_hi, b_hi = tf32(a.data), tf32(b.data)
        product = np.matmul(a_hi, b_hi)
        if input_precision == ir.INPUT_PRECISION.TF32x3:
            a_lo, b_lo = tf32(a.data - a_hi), tf32(b.data - b_hi)
            product = np.matmul(a_lo, b_hi) + np.matmul(a_hi, b_lo) + product
        return interpreter.TensorHandle(product.astype(d.data.dtype) + d.data, d.dtype.scalar)

    interpreter.InterpreterBuilder.create_dot = create_dot


if INTERPRETING:
    _upcast_bfloat16_dot_operands()
    _emulate_device_dot_precision()


def _case(length, chunk, n_hashes, causal, padding, dup, dtype, *, backend, dim=DIM, seed=0):
    """Output and gradients (masked to real queries), and the buckets, for one backend."""
    gen = torch.Generator().manual_seed(seed)
    qk64 = torch.randn(2, 1, length, dim, generator=gen, dtype=torch.float64)
    v64 = torch.randn(2, 1, length, dim, generator=gen, dtype=torch.float64)
    mask = None
    if padding:
        mask = torch.rand(2, length, generator=gen) > 0.25
        mask[:, 0] = True
    real = (torch.ones(2, length, dtype=torch.bool) if mask is None else mask)[:, None, :, None]
    weight = torch.randn(v64.shape, generator=gen, dtype=torch.float64) * real
    qk = qk64.to(DEVICE, dtype).requires_grad_()
    v = v64.to(DEVICE, dtype).requires_grad_()
    out, buckets = lsh_attention(
        qk,
        v,
        n_hashes=n_hashes,
        bucket_size=chunk,
        causal=causal,
        seed=seed + 1,
        dup_correction=dup,
        return_buckets=True,
        padding_mask=None if mask is None else mask.to(DEVICE),
        backend=backend,
    )
    grads = torch.autograd.grad((out * weight.to(DEVICE, dtype)).sum(), (qk, v))
    results = [x.detach().double().cpu() for x in (out, *grads)]
    results[0] = results[0] * real
    return results, (qk64, v64, mask, weight, buckets.cpu())


def _reference(inputs, chunk, causal, dup):
    qk64, v64, mask, weight, buckets = inputs
    qk, v = qk64.clone().requires_grad_(), v64.clone().requires_grad_()
    ref = lsh_attention_reference(
        qk, v, buckets, bucket_size=chunk, causal=causal, padding_mask=mask, dup_correction=dup
    )
    grads = torch.autograd.grad((ref * weight).sum(), (qk, v))
    real = weight.ne(0).any(-1, keepdim=True) if mask is not None else 1.0
    return [ref.detach() * real, *grads]


def _error(a, b) -> float:
    return float((a - b).abs().max())


GRID = [
    # length, bucket_size, n_hashes, causal, padding, dup_correction
    (20, 4, 2, True, True, True),  # L not a multiple of the chunk, padding
    (13, 4, 3, False, True, True),
    (20, 8, 2, True, True, False),  # no duplicate correction
    (9, 4, 1, False, False, True),  # one round
    (24, 8, 4, True, True, True),  # four rounds
    (30, 6, 2, True, False, True),  # chunk not a power of two
    (24, 4, 4, False, False, False),
    (8, 8, 2, True, False, True),  # one chunk per round: the look-back is the other round
    (6, 8, 1, True, False, True),  # one chunk in all: no look-back
    # float32 chunks over 16 are split into two query tiles per program
    (50, 20, 2, True, True, True),
    (70, 33, 2, False, False, True),  # the second query tile holds one lane
]


# On the GPU every distinct shape is a cold compile: a few cases, the ones the GPU check
# compiles ahead of time (suites.tools.triton_aot.DEVICE_CASES), not the interpreter's grid.
CASES = GRID if INTERPRETING else list(DEVICE_CASES)
HALF_CASES = [GRID[0], GRID[2], GRID[4]] if INTERPRETING else list(DEVICE_CASES[:3])


@pytest.mark.parametrize("length,chunk,n_hashes,causal,padding,dup", CASES)
def test_float32_matches_reference(length, chunk, n_hashes, causal, padding, dup):
    kernel, inputs = _case(
        length, chunk, n_hashes, causal, padding, dup, torch.float32, backend="triton"
    )
    expected = _reference(inputs, chunk, causal, dup)
    eps = torch.finfo(torch.float32).eps
    relative = (2 * chunk * n_hashes + 16) * eps + (DIM + 2 * chunk) * TF32X3_PRODUCT_ERROR
    for name, got, ref in zip(("out", "grad_qk", "grad_v"), kernel, expected, strict=True):
        bound = relative * float(ref.abs().max())
        assert _error(got, ref) <= bound, (name, _error(got, ref), bound)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("length,chunk,n_hashes,causal,padding,dup", HALF_CASES)
def test_half_precision_error_at_most_twice_the_torch_path(
    length, chunk, n_hashes, causal, padding, dup, dtype
):
    args = (length, chunk, n_hashes, causal, padding, dup, dtype)
    kernel, inputs = _case(*args, backend="triton")
    plain, _ = _case(*args, backend="torch")
    expected = _reference(inputs, chunk, causal, dup)
    eps = torch.finfo(dtype).eps
    for name, got, low, ref in zip(
        ("out", "grad_qk", "grad_v"), kernel, plain, expected, strict=True
    ):
        bound = 2 * _error(low, ref) + eps * float(ref.abs().max())
        assert _error(got, ref) <= bound, (name, _error(got, ref), bound)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("dup", [True, False])
def test_query_that_sees_only_itself_gets_exactly_its_value(dup, dtype):
    """Exact by construction (the kernel selects v for such a row), so it holds under the
    device's tf32x3 rounding too, which the interpreter emulates here."""
    gen = torch.Generator().manual_seed(0)
    qk, v = (torch.randn(1, 2, 32, 16, generator=gen).to(DEVICE, dtype) for _ in range(2))
    out = lsh_attention(
        qk, v, n_hashes=4, bucket_size=8, causal=True, seed=1, dup_correction=dup, backend="triton"
    )
    assert torch.equal(out[:, :, 0], v[:, :, 0])


@pytest.mark.parametrize("dup", [True, False])
def test_query_that_sees_only_itself_passes_its_gradient_within_one_product(dup):
    """dL/dv at position 0 is the rounds' weights (summing to 1) times dL/dout[0] through
    tl.dot: within a few float32 ulp (the weights) plus one tf32x3 product."""
    gen = torch.Generator().manual_seed(0)
    qk, v = (torch.randn(1, 2, 32, 16, generator=gen).to(DEVICE).requires_grad_() for _ in range(2))
    out = lsh_attention(
        qk, v, n_hashes=4, bucket_size=8, causal=True, seed=1, dup_correction=dup, backend="triton"
    )
    grad_out = torch.zeros_like(out)
    grad_out[:, :, 0] = torch.randn(out[:, :, 0].shape, generator=gen).to(DEVICE)
    out.backward(grad_out)
    eps = torch.finfo(torch.float32).eps
    bound = (8 * eps + TF32X3_PRODUCT_ERROR) * grad_out.abs().max().item()
    torch.testing.assert_close(v.grad[:, :, 0], grad_out[:, :, 0], rtol=0, atol=bound)


def test_runs_are_bit_identical():
    """No atomics: every position has one writer per launch, so reruns agree bit for bit."""
    first, _ = _case(16, 4, 2, True, True, True, torch.float32, backend="triton")
    second, _ = _case(16, 4, 2, True, True, True, torch.float32, backend="triton")
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a, b)


def test_saves_no_more_for_backward_than_the_torch_path():
    """qk, v, an int32 permutation and two float32 statistics per position: no window
    scores and no sorted copies (the torch path saves an int64 permutation and one lse)."""
    from suites.harness.saved_bytes import saved_bytes

    gen = torch.Generator().manual_seed(0)
    qk, v = (torch.randn(1, 2, 64, 16, generator=gen).to(DEVICE).requires_grad_() for _ in range(2))

    def saved(backend):
        n_bytes, _ = saved_bytes(
            lambda: lsh_attention(
                qk, v, n_hashes=4, bucket_size=16, causal=True, seed=0, backend=backend
            )
        )
        return n_bytes

    assert saved("triton") <= saved("torch")


@pytest.mark.parametrize("causal", [True, False])
def test_padded_contents_reach_no_real_output_or_gradient(causal):
    check_padded_contents_reach_nothing("triton", DEVICE, causal)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_nonfinite_future_values_reach_no_earlier_query(dtype):
    check_future_values_reach_no_earlier_query("triton", DEVICE, dtype)


@pytest.mark.parametrize("causal", [True, False])
def test_nonfinite_values_reach_exactly_the_queries_that_may_see_them(causal):
    check_nan_reaches_the_queries_that_may_see_it("triton", DEVICE, causal, atol=1e-5)


@pytest.mark.parametrize("causal", [True, False])
def test_local_attention_matches_its_reference(causal):
    """Local attention runs the same kernels in position order, one round."""
    from reformer.lsh.local import local_attention
    from reformer.reference import local_attention_reference

    gen = torch.Generator().manual_seed(3)
    qk64, v64 = (torch.randn(2, 2, 20, DIM, generator=gen, dtype=torch.float64) for _ in range(2))
    mask = torch.rand(2, 20, generator=gen) > 0.25
    mask[:, 0] = True
    weight = torch.randn(v64.shape, generator=gen, dtype=torch.float64) * mask[:, None, :, None]
    qk = qk64.to(DEVICE, torch.float32).requires_grad_()
    v = v64.to(DEVICE, torch.float32).requires_grad_()
    out = local_attention(
        qk, v, bucket_size=8, causal=causal, padding_mask=mask.to(DEVICE), backend="triton"
    )
    got = [out, *torch.autograd.grad((out * weight.to(DEVICE, torch.float32)).sum(), (qk, v))]
    qk_ref, v_ref = qk64.clone().requires_grad_(), v64.clone().requires_grad_()
    ref = local_attention_reference(qk_ref, v_ref, bucket_size=8, causal=causal, padding_mask=mask)
    expected = [ref, *torch.autograd.grad((ref * weight).sum(), (qk_ref, v_ref))]
    real = mask[:, None, :, None]
    got[0], expected[0] = got[0].detach().double().cpu() * real, expected[0].detach() * real
    eps = torch.finfo(torch.float32).eps
    relative = (2 * 8 + 16) * eps + (DIM + 2 * 8) * TF32X3_PRODUCT_ERROR
    for name, a, b in zip(("out", "grad_qk", "grad_v"), got, expected, strict=True):
        bound = relative * float(b.abs().max())
        assert _error(a.double().cpu(), b) <= bound, (name, _error(a.double().cpu(), b), bound)
