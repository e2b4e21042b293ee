"""The fused CPU kernel (backend="cpu") against the reference twin and the torch path.

Tolerances. float32: rounding alone, at most about (2c·R + 16)·eps + (D + 2c)·eps of the
largest reference value: window sums over R rounds and the merge in float32, and the
longest chains of float32 products (a D-term logit, a 2c-term window product).
"""

from __future__ import annotations

import pytest
import torch

from reformer import LSHSelfAttention, ReformerConfig, lsh_attention
from reformer.lsh import dispatch
from reformer.lsh.cpu import build
from reformer.reference import lsh_attention_reference
from suites.harness.saved_bytes import saved_bytes

pytestmark = pytest.mark.skipif(
    build.cpu_kernel_unavailable() is not None,
    reason=f"the fused CPU kernel cannot run here: {build.cpu_kernel_unavailable()}",
)

EPS = torch.finfo(torch.float32).eps


def _inputs(length, dim, padding, seed=0, batch=2, heads=1):
    gen = torch.Generator().manual_seed(seed)
    qk64 = torch.randn(batch, heads, length, dim, generator=gen, dtype=torch.float64)
    v64 = torch.randn(batch, heads, length, dim, generator=gen, dtype=torch.float64)
    mask = None
    if padding:
        mask = torch.rand(batch, length, generator=gen) > 0.25
        mask[:, 0] = True
    real = (torch.ones(batch, length, dtype=torch.bool) if mask is None else mask)[:, None, :, None]
    weight = torch.randn(v64.shape, generator=gen, dtype=torch.float64) * real
    return qk64, v64, mask, weight, real


def _run(backend, inputs, chunk, n_hashes, causal, dup, dtype=torch.float32, seed=1):
    qk64, v64, mask, weight, real = inputs
    qk = qk64.to(dtype).requires_grad_()
    v = v64.to(dtype).requires_grad_()
    out, buckets = lsh_attention(
        qk,
        v,
        n_hashes=n_hashes,
        bucket_size=chunk,
        causal=causal,
        seed=seed,
        dup_correction=dup,
        return_buckets=True,
        padding_mask=mask,
        backend=backend,
    )
    grads = torch.autograd.grad((out * weight.to(dtype)).sum(), (qk, v))
    results = [x.detach().double() for x in (out, *grads)]
    results[0] = results[0] * real
    return results, buckets


def _reference(inputs, buckets, chunk, causal, dup):
    qk64, v64, mask, weight, real = inputs
    qk, v = qk64.clone().requires_grad_(), v64.clone().requires_grad_()
    ref = lsh_attention_reference(
        qk, v, buckets, bucket_size=chunk, causal=causal, padding_mask=mask, dup_correction=dup
    )
    grads = torch.autograd.grad((ref * weight).sum(), (qk, v))
    return [ref.detach() * real, *grads]


def _error(a, b) -> float:
    return float((a - b).abs().max())


GRID = [
    # length, bucket_size, n_hashes, causal, padding, dup_correction, d_head
    (20, 4, 2, True, True, True, 6),  # L not a multiple of the chunk, padding
    (13, 4, 3, False, True, True, 6),
    (20, 8, 2, True, True, False, 6),  # no duplicate correction
    (9, 4, 1, False, False, True, 6),  # one round
    (24, 8, 4, True, True, True, 6),  # four rounds
    (30, 6, 2, True, False, True, 6),  # chunk not a power of two (odd matmul blocks)
    (24, 4, 4, False, False, False, 6),
    (8, 8, 2, True, False, True, 6),  # one chunk per round: the look-back is the other round
    (6, 8, 1, True, False, True, 6),  # one chunk in all: no look-back
    (256, 64, 4, True, True, True, 64),  # the suites' shape: whole vector blocks
    (200, 40, 2, True, False, True, 20),  # widths past the last whole vector block
    (96, 32, 8, False, True, True, 32),
]


@pytest.mark.parametrize("length,chunk,n_hashes,causal,padding,dup,dim", GRID)
def test_matches_the_reference_and_the_torch_path(
    length, chunk, n_hashes, causal, padding, dup, dim
):
    inputs = _inputs(length, dim, padding)
    fused, buckets = _run("cpu", inputs, chunk, n_hashes, causal, dup)
    plain, plain_buckets = _run("torch", inputs, chunk, n_hashes, causal, dup)
    assert torch.equal(buckets, plain_buckets)
    expected = _reference(inputs, buckets, chunk, causal, dup)
    relative = (2 * chunk * n_hashes + 16) * EPS + (dim + 2 * chunk) * EPS
    for name, got, low, ref in zip(
        ("out", "grad_qk", "grad_v"), fused, plain, expected, strict=True
    ):
        bound = relative * float(ref.abs().max())
        assert _error(got, ref) <= bound, (name, _error(got, ref), bound)
        # Within the same bound of the torch path too (both are float32 twins of ref).
        assert _error(got, low) <= 2 * bound, (name, _error(got, low), bound)


@pytest.mark.parametrize("dup", [True, False])
def test_query_that_sees_only_itself_gets_exactly_its_value(dup):
    gen = torch.Generator().manual_seed(0)
    qk, v = (torch.randn(1, 2, 32, 16, generator=gen) for _ in range(2))
    out = lsh_attention(
        qk, v, n_hashes=4, bucket_size=8, causal=True, seed=1, dup_correction=dup, backend="cpu"
    )
    assert torch.equal(out[:, :, 0], v[:, :, 0])


def test_rows_with_no_key_give_zero_output_and_gradient_not_nan():
    """A padded query whose every key is padding or in its future saw nothing: weight 0
    everywhere, output 0, and no NaN in backward (its 1/sum is 0, not 1/0)."""
    gen = torch.Generator().manual_seed(0)
    qk, v = (torch.randn(1, 2, 16, 8, generator=gen).requires_grad_() for _ in range(2))
    mask = torch.ones(1, 16, dtype=torch.bool)
    mask[:, :4] = False  # positions 0-3: nothing before them is real, nor are they
    out = lsh_attention(
        qk, v, n_hashes=2, bucket_size=4, causal=True, seed=0, padding_mask=mask, backend="cpu"
    )
    out.sum().backward()
    assert torch.equal(out[:, :, :4], torch.zeros_like(out[:, :, :4]))
    assert torch.isfinite(qk.grad).all() and torch.isfinite(v.grad).all()


def test_nan_in_a_value_reaches_the_queries_that_see_it():
    qk, v = torch.randn(1, 1, 16, 8), torch.randn(1, 1, 16, 8)
    v[0, 0, 0] = float("nan")
    out = lsh_attention(qk, v, n_hashes=1, bucket_size=16, causal=True, seed=0, backend="cpu")
    # One chunk: every query sees position 0, the first key.
    assert torch.isnan(out).any(-1).all()


def _grads(threads, inputs):
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _run("cpu", inputs, 8, 4, True, True)[0]
    finally:
        torch.set_num_threads(previous)


def test_bit_identical_whatever_the_number_of_threads():
    """Each position has one writer per launch, and items never split a sum: the result
    does not depend on how many threads claim the items, nor on their order."""
    inputs = _inputs(64, 16, True, batch=3, heads=2)
    one, two, again = _grads(1, inputs), _grads(2, inputs), _grads(3, inputs)
    for a, b, c in zip(one, two, again, strict=True):
        assert torch.equal(a, b) and torch.equal(a, c)


def test_strided_inputs_give_the_same_result_as_contiguous_ones():
    """The module hands over (B, L, H, D) memory seen as (B, H, L, D): no copy, same result."""
    gen = torch.Generator().manual_seed(0)
    qk_blhd, v_blhd = (torch.randn(2, 24, 3, 8, generator=gen) for _ in range(2))
    strided = [x.transpose(1, 2).requires_grad_() for x in (qk_blhd.clone(), v_blhd.clone())]
    dense = [x.transpose(1, 2).contiguous().requires_grad_() for x in (qk_blhd, v_blhd)]
    outs = []
    for qk, v in (strided, dense):
        out = lsh_attention(qk, v, n_hashes=2, bucket_size=4, seed=0, backend="cpu")
        out.square().sum().backward()
        outs.append((out, qk.grad, v.grad))
    for a, b in zip(*outs, strict=True):
        assert torch.equal(a, b)


def test_saves_no_more_for_backward_than_the_torch_path():
    gen = torch.Generator().manual_seed(0)
    qk, v = (torch.randn(1, 2, 64, 16, generator=gen).requires_grad_() for _ in range(2))

    def saved(backend):
        n_bytes, _ = saved_bytes(
            lambda: lsh_attention(
                qk, v, n_hashes=4, bucket_size=16, causal=True, seed=0, backend=backend
            )
        )
        return n_bytes

    assert saved("cpu") <= saved("torch")


def test_the_module_runs_the_kernel_under_auto():
    config = ReformerConfig(d_model=16, n_heads=2, bucket_size=4, n_hashes=2)
    assert config.backend == "auto"
    layer = LSHSelfAttention(config)
    x = torch.randn(1, 16, 16)
    assert dispatch.resolve_backend("auto", "cpu", torch.float32, 4, 8) == "cpu"
    fused = layer(x)
    plain = LSHSelfAttention(config.replace(backend="torch"))
    plain.load_state_dict(layer.state_dict())
    torch.testing.assert_close(fused, plain(x), rtol=0, atol=1e-5)


def test_auto_keeps_the_torch_path_for_other_dtypes():
    assert dispatch.resolve_backend("auto", "cpu", torch.float64, 64, 64) == "torch"
    assert dispatch.resolve_backend("auto", "cpu", torch.bfloat16, 64, 64) == "torch"


def test_asking_for_cpu_where_it_cannot_run_names_the_field():
    with pytest.raises(ValueError, match="backend='cpu' takes float32"):
        dispatch.resolve_backend("cpu", "cpu", torch.float64, 64, 64)
    with pytest.raises(ValueError, match="backend='cpu' needs a CPU tensor"):
        dispatch.resolve_backend("cpu", "cuda", torch.float32, 64, 64)


def test_auto_without_a_compiler_is_the_torch_path_silently(monkeypatch, fresh_build, recwarn):
    monkeypatch.setattr(build, "find_compiler", lambda: None)
    assert dispatch.resolve_backend("auto", "cpu", torch.float32, 64, 64) == "torch"
    assert not [w for w in recwarn if "fused CPU kernel" in str(w.message)]
    with pytest.raises(ValueError, match="backend='cpu' cannot run.*no C compiler"):
        dispatch.resolve_backend("cpu", "cpu", torch.float32, 64, 64)


def test_a_compiler_that_fails_means_torch_with_one_warning(monkeypatch, fresh_build):
    monkeypatch.setenv("CC", "false")  # a "compiler" that always fails
    with pytest.warns(RuntimeWarning, match="fused CPU kernel cannot run"):
        assert dispatch.resolve_backend("auto", "cpu", torch.float32, 64, 64) == "torch"
    assert dispatch.resolve_backend("auto", "cpu", torch.float32, 64, 64) == "torch"
    assert "compiling lsh_cpu.c" in (build.cpu_kernel_unavailable() or "")


def test_an_unwritable_cache_means_torch_with_the_reason(monkeypatch, fresh_build):
    blocker = fresh_build / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("REFORMER_CACHE_DIR", str(blocker / "cache"))
    with pytest.warns(RuntimeWarning, match="REFORMER_CACHE_DIR"):
        assert dispatch.resolve_backend("auto", "cpu", torch.float32, 64, 64) == "torch"


def test_the_build_is_cached_by_source_and_machine(fresh_build):
    first = build.library_path()
    assert first.parent == fresh_build and first.name.startswith("lsh_cpu-")
    built = first.stat().st_mtime_ns
    assert build.library_path() == first
    assert first.stat().st_mtime_ns == built  # found, not rebuilt
    assert build.cpu_kernel_unavailable() is None


def _use_the_pool_in_child(queue) -> None:
    from reformer.lsh.cpu import function

    queue.put(function._executor(1).submit(lambda: 42).result(timeout=30))


def test_a_forked_child_gets_threads_of_its_own():
    """A forked child (a DataLoader worker, say) inherits the kernel's thread pool object
    but not its threads: work submitted to it would wait forever, so the child must get a
    pool of its own. (Only the pool is exercised in the child: torch's own OpenMP ops are
    not fork-safe after the parent used them, whatever the backend.)"""
    import multiprocessing

    from reformer.lsh.cpu import function

    function._executor(1).submit(lambda: None).result()  # the parent's pool, with a thread
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_use_the_pool_in_child, args=(queue,))
    child.start()
    child.join(timeout=60)
    if child.is_alive():
        child.kill()
        raise AssertionError("the forked child waited on its parent's threads")
    assert child.exitcode == 0 and queue.get(timeout=5) == 42
