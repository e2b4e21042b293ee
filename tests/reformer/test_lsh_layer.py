"""The LSH layer as one Function with a head-by-head backward (reformer.lsh.layer) against
its slow twin, the layer's separate modules (to_qk, to_v, lsh_attention, to_out), outputs
and gradients of x and every weight; and the bytes it saves for backward.

float64 runs each head's attention on the torch path (the fused C kernel is float32 only);
float32 runs the C kernel, as the model does.
"""

from __future__ import annotations

import pytest
import torch

from reformer import LSHSelfAttention, ReformerConfig, ReformerLM
from reformer.lsh.cpu import build
from reformer.lsh.local import LocalSelfAttention
from suites.harness.saved_bytes import saved_bytes

needs_kernel = pytest.mark.skipif(
    build.cpu_kernel_unavailable() is not None,
    reason=f"the fused CPU kernel cannot run here: {build.cpu_kernel_unavailable()}",
)


def _layers(dtype, **changes):
    config = ReformerConfig(
        **({"d_model": 32, "n_heads": 4, "bucket_size": 4, "n_hashes": 2} | changes)
    )
    torch.manual_seed(0)
    fused = LSHSelfAttention(config).to(dtype)
    separate = LSHSelfAttention(config).to(dtype)
    separate.load_state_dict(fused.state_dict())
    separate.fused_layer = False
    fused.fused_layer_min_tokens = 0  # the tests' inputs are short
    # Both layers' generators start from the same seed: they draw the same rotations.
    return fused, separate


def _inputs(dtype, length, padding, batch=2, seed=1):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, length, 32, generator=gen, dtype=dtype)
    mask = None
    if padding:
        mask = torch.rand(batch, length, generator=gen) > 0.3
        mask[:, 0] = True
        x[~mask] = float("nan")  # padded contents must reach no real output or gradient
    weight = torch.randn(batch, length, 32, generator=gen, dtype=dtype)
    if mask is not None:
        weight = weight * mask[..., None]  # a padded position's own output means nothing
    return x, mask, weight


def _outputs_and_grads(run, layer, x, weight):
    x = x.clone().requires_grad_()
    out = run(x)
    loss = torch.where(weight != 0, out * weight, 0.0).sum()
    grads = torch.autograd.grad(loss, [x, *layer.parameters()])
    return [torch.where(weight != 0, out, 0.0).detach(), *grads]


NAMES = ("out", "grad_x", "grad_to_qk", "grad_to_v", "grad_to_out.weight", "grad_to_out.bias")


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("padding", [False, True])
@pytest.mark.parametrize("n_hashes", [1, 4])
@pytest.mark.parametrize("length", [24, 22])  # a multiple of the chunk, and not
def test_float64_matches_the_separate_modules(causal, padding, n_hashes, length):
    fused, separate = _layers(torch.float64, causal=causal, n_hashes=n_hashes)
    x, mask, weight = _inputs(torch.float64, length, padding)
    if padding:
        x = torch.where(mask[..., None], x, 0.0)  # NaN-free: weight gradients are compared
    got = _outputs_and_grads(lambda t: fused.fused(t, mask, backend="torch"), fused, x, weight)
    expected = _outputs_and_grads(lambda t: separate(t, mask), separate, x, weight)
    for name, a, b in zip(NAMES, got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10, msg=name)


@needs_kernel
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("padding", [False, True])
@pytest.mark.parametrize("n_hashes", [1, 4])
def test_float32_kernel_matches_the_separate_modules(causal, padding, n_hashes):
    fused, separate = _layers(torch.float32, causal=causal, n_hashes=n_hashes)
    x, mask, weight = _inputs(torch.float32, 30, padding)
    x = torch.where(mask[..., None], x, 0.0) if padding else x
    assert fused.fuses(x) and not separate.fuses(x)
    got = _outputs_and_grads(lambda t: fused(t, mask), fused, x, weight)
    expected = _outputs_and_grads(lambda t: separate(t, mask), separate, x, weight)
    for name, a, b in zip(NAMES, got, expected, strict=True):
        # float32 rounding only: the projections are summed head by head here.
        bound = 1e-5 * float(b.abs().max())
        assert float((a - b).abs().max()) <= bound, (name, float((a - b).abs().max()), bound)


@needs_kernel
def test_nan_at_padded_positions_reaches_no_output_or_input_gradient():
    fused, separate = _layers(torch.float32)
    x, mask, weight = _inputs(torch.float32, 22, padding=True)
    got = _outputs_and_grads(lambda t: fused(t, mask), fused, x, weight)
    expected = _outputs_and_grads(lambda t: separate(t, mask), separate, x, weight)
    for name, a, b in zip(NAMES[:2], got[:2], expected[:2], strict=True):
        assert torch.isfinite(a).all(), name
        bound = 1e-5 * float(b.abs().max())
        assert float((a - b).abs().max()) <= bound, (name, float((a - b).abs().max()), bound)
    # The input gradient at a padded position is 0, as with the separate modules.
    assert torch.equal(got[1][~mask], torch.zeros_like(got[1][~mask]))


@needs_kernel
def test_saves_less_for_backward_than_the_separate_modules():
    fused, separate = _layers(torch.float32, n_hashes=4)
    x = torch.randn(1, 512, 32, requires_grad=True)

    def saved(layer):
        n_bytes, _ = saved_bytes(lambda: layer(x))
        return n_bytes

    fused_bytes, separate_bytes = saved(fused), saved(separate)
    # Separate: x, qk, v and the attention output (four (L, d_model) buffers) with the
    # sort order and row statistics. Fused: x and the int32 sort order only.
    assert 2 * fused_bytes <= separate_bytes, (fused_bytes, separate_bytes)


@needs_kernel
def test_runs_only_where_the_c_kernel_runs():
    fused, _ = _layers(torch.float32)
    x = torch.randn(1, 16, 32)
    assert fused.fuses(x)
    assert not fused.fuses(x, exact=True)
    assert not fused.fuses(x.double())
    assert not fused.fuses(x[:, :0])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not fused.fuses(x)
    for backend in ("torch", "triton"):
        layer = LSHSelfAttention(fused.config.replace(backend=backend))
        assert not layer.fuses(x)
    assert not LocalSelfAttention(fused.config.replace(attention="local")).fuses(x)


@needs_kernel
def test_short_calls_run_the_separate_modules_long_ones_the_function():
    layer = LSHSelfAttention(ReformerConfig(d_model=32, n_heads=4, bucket_size=4))
    threshold = layer.fused_layer_min_tokens
    assert threshold > 16384  # every length of the time and peers suites' default grids
    assert not layer.fuses(torch.empty(1, threshold - 1, 32))
    assert not layer.fuses(torch.empty(2, threshold // 2 - 1, 32))
    assert layer.fuses(torch.empty(1, threshold, 32))
    assert layer.fuses(torch.empty(2, threshold // 2, 32))


@needs_kernel
@pytest.mark.parametrize("padding", [False, True])
def test_a_reversible_model_step_matches_the_separate_modules(padding):
    config = ReformerConfig(
        vocab_size=32,
        d_model=32,
        n_heads=4,
        n_layers=2,
        d_ff=64,
        n_hashes=2,
        bucket_size=8,
        ff_chunks=4,
        max_seq_len=256,
    )
    tokens = torch.randint(32, (2, 70), generator=torch.Generator().manual_seed(0))
    mask = None
    if padding:
        mask = torch.ones(2, 70, dtype=torch.bool)
        mask[1, 50:] = False

    def step(fused_layer):
        torch.manual_seed(0)
        model = ReformerLM(config)
        for block in model.blocks:
            block.attention.fused_layer = fused_layer
            block.attention.fused_layer_min_tokens = 0
        loss = model.loss(tokens, mask)
        loss.backward()
        return [loss.detach()] + [p.grad for p in model.parameters()]

    for a, b in zip(step(True), step(False), strict=True):
        assert float((a - b).abs().max()) <= 1e-5 * max(1.0, float(b.abs().max()))
