"""The fused LSH decoding step (reformer.lsh.cpu.decode_step, lsh_cpu.c) against the
from-scratch twin, against the torch step, and where it is not taken."""

from __future__ import annotations

import copy

import pytest
import torch

from reformer import ReformerConfig, ReformerLM
from reformer.decode import fused_decode
from reformer.generate import incremental_logits
from reformer.lsh import LSHSelfAttention
from reformer.lsh.cpu.build import cpu_kernel_unavailable
from reformer.lsh.hashing import hash_vectors
from reformer.reference import lsh_decode_keys_reference, lsh_decode_reference
from tests.reformer import test_decode
from tests.reformer.test_decode import SMALL
from tests.reformer.test_decode_hardening import _step_bytes

pytestmark = pytest.mark.skipif(
    cpu_kernel_unavailable() is not None,
    reason=f"the fused CPU kernel cannot run here: {cpu_kernel_unavailable()}",
)


def _layer(n_hashes: int, bucket_size: int, n_buckets, seed: int = 0) -> LSHSelfAttention:
    config = ReformerConfig(
        **SMALL | {"n_layers": 1}, n_hashes=n_hashes, bucket_size=bucket_size, n_buckets=n_buckets
    )
    torch.manual_seed(seed)
    return LSHSelfAttention(config)  # float32: the fused step's dtype


def _keys(row: torch.Tensor) -> set[int]:
    return {int(s) for s in row if s >= 0}


@pytest.mark.parametrize("n_buckets", [8, (4, 6)])
@pytest.mark.parametrize("n_hashes", [1, 4])
def test_the_fused_step_matches_the_twin_over_300_steps(n_hashes, n_buckets):
    """Few buckets and small chunks, so rings overflow and rounds share keys; batch 2,
    causal; the prompt through the bulk insertion, then 283 fused steps, each hashing the
    new position itself. Its buckets (reported) agree with hash_vectors' and make the
    record the twin reads; its key set is the twin's exactly, its output the twin's
    softmax to float32 rounding."""
    bucket_size, batch, length, prompt = 4, 2, 300, 17
    layer = _layer(n_hashes, bucket_size, n_buckets)
    x = torch.randn(batch, length, 32)
    cache = layer.new_cache(batch, length, x)
    assert cache.fused
    with torch.no_grad():
        qk, v = layer.project(x)  # (B, H, L, D)
        record = hash_vectors(qk, cache.rotations, cache.factors)  # (B, H, R, L)
        cache.store(x[:, :prompt], record[..., :prompt], qk[:, :, :prompt])
        width = (n_hashes + 1) * bucket_size
        keys = torch.empty(batch, 2, width, dtype=torch.int64)
        hashed = torch.empty(batch, 2, n_hashes, dtype=torch.int64)
        flips = 0
        for t in range(prompt, length):
            out = cache.step(x[:, t], keys_out=keys, buckets_out=hashed).view(batch, 2, 16)
            flips += int((hashed != record[..., t]).sum())  # float32 near-ties only
            record[..., t] = hashed
            for b in range(batch):
                for h in range(2):
                    got = _keys(keys[b, h])
                    expected = lsh_decode_keys_reference(record[b, h, :, : t + 1], bucket_size)
                    assert got == expected, (t, b, h)
                    assert len(got) <= width and all(s < t for s in got)
                    reference = lsh_decode_reference(
                        qk[b, h, : t + 1].double(), v[b, h, : t + 1].double(), expected
                    )
                    torch.testing.assert_close(out[b, h].double(), reference, rtol=1e-4, atol=2e-6)
    assert cache.length == length
    assert flips <= 2, flips


def test_the_fused_step_takes_given_buckets_and_keeps_each_ragged_rows_keys_its_own():
    """A left-padded batch: the pads in the bucket past the last (never listed), the
    steps' buckets given, 80 steps; each row's key set is the twin's on its real
    positions alone."""
    layer = _layer(3, 4, 8, seed=6)
    batch, length, prompt = 3, 100, 17
    first = torch.tensor([0, 5, 16])
    x = torch.randn(batch, length, 32)
    cache = layer.new_cache(batch, length, x)
    cache.set_first(first)
    with torch.no_grad():
        qk = layer.project(x)[0]
        all_buckets = hash_vectors(qk, cache.rotations, cache.factors)
        real = torch.arange(prompt)[None, :] >= first[:, None]
        padded = all_buckets[..., :prompt].masked_fill(~real[:, None, None, :], 8)
        cache.store(x[:, :prompt], padded, qk[:, :, :prompt])
        keys = torch.empty(batch, 2, 16, dtype=torch.int64)
        for t in range(prompt, length):
            given = all_buckets[..., t].contiguous()
            cache.step(x[:, t], buckets=given, keys_out=keys)
            for b in range(batch):
                start = int(first[b])
                for h in range(2):
                    own = lsh_decode_keys_reference(all_buckets[b, h, :, start : t + 1], 4)
                    assert _keys(keys[b, h]) == {s + start for s in own}, (t, b, h)
    assert torch.equal(cache.table, _torch_twin_table(layer, x, first, all_buckets, prompt))


def _torch_twin_table(layer, x, first, all_buckets, prompt) -> torch.Tensor:
    """The bucket table the torch step's store leaves after the same positions."""
    with fused_decode(False):
        twin = layer.new_cache(x.shape[0], x.shape[1], x)
    twin.set_first(first)
    real = torch.arange(prompt)[None, :] >= first[:, None]
    twin.store(x[:, :prompt], all_buckets[..., :prompt].masked_fill(~real[:, None, None, :], 8))
    for t in range(prompt, x.shape[1]):
        twin.store(x[:, t : t + 1], all_buckets[..., t : t + 1])
    return twin.table


@pytest.mark.parametrize("reversible", [True, False])
@pytest.mark.parametrize("n_buckets", [None, (4, 6)])
def test_greedy_generation_is_identical_with_the_fused_step_on_and_off(reversible, n_buckets):
    """Twin models (same weights, same generator states, so the same rotations), one
    decoding with the fused step, one with the torch step: the same tokens, and
    teacher-forced logits equal to float32 rounding. Several chunks per context."""
    config = ReformerConfig(
        **SMALL, n_hashes=4, bucket_size=8, n_buckets=n_buckets, reversible=reversible
    )
    torch.manual_seed(1)
    fused = ReformerLM(config)
    plain = copy.deepcopy(fused)
    prompt = torch.randint(0, 50, (2, 5))
    tokens = torch.randint(0, 50, (2, 160))
    with fused_decode(True):
        got = fused.generate(prompt, 150, temperature=0)
        logits = incremental_logits(fused, tokens, prompt_len=9)
    with fused_decode(False):
        expected = plain.generate(prompt, 150, temperature=0)
        expected_logits = incremental_logits(plain, tokens, prompt_len=9)
    assert torch.equal(got, expected)
    torch.testing.assert_close(logits, expected_logits, rtol=1e-4, atol=1e-5)


def test_the_fused_step_is_taken_only_where_the_forward_takes_the_cpu_kernel(monkeypatch):
    layer = _layer(2, 4, 8)
    like = torch.empty(0)
    assert layer.new_cache(1, 8, like).fused
    assert not layer.double().new_cache(1, 8, like.double()).fused  # float64: torch step
    layer.float()
    with fused_decode(False):
        assert not layer.new_cache(1, 8, like).fused
    layer.config = layer.config.replace(backend="torch")
    assert not layer.new_cache(1, 8, like).fused
    layer.config = layer.config.replace(backend="auto")
    # No compiler (or any other reason the kernel cannot run): "auto" resolves to torch.
    monkeypatch.setattr("reformer.lsh.attention.resolve_backend", lambda *a, **k: "torch")
    cache = layer.new_cache(1, 8, like)
    assert not cache.fused and cache.inv_norms is None
    with pytest.raises(ValueError, match="torch step"):
        cache.step(torch.zeros(1, 32))


def test_the_step_is_the_same_on_one_thread_and_two():
    """Batch 8 (32 items, shared among threads from 8 up): items are independent, so the
    result does not depend on the threads."""
    config = ReformerConfig(**SMALL, n_hashes=2, bucket_size=8)
    torch.manual_seed(2)
    model = ReformerLM(config)
    twin = copy.deepcopy(model)
    prompt = torch.randint(0, 50, (8, 20))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = model.generate(prompt, 40, temperature=0)
        torch.set_num_threads(2)
        two = twin.generate(prompt, 40, temperature=0)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two)


def test_a_steps_allocated_bytes_do_not_grow_with_the_context_on_either_step():
    """test_decode_hardening's 4K-against-256K check runs the fused step (the default
    where the kernel runs: checked here); the same bounds hold for the torch step."""
    config = ReformerConfig(
        vocab_size=50, d_model=32, n_heads=2, n_layers=1, d_ff=64, n_hashes=2, bucket_size=64
    )
    assert ReformerLM(config).new_caches(1, 4096, torch.empty(0))[0].fused
    with fused_decode(False):
        small_alloc, small_swept = _step_bytes(4096)
        large_alloc, large_swept = _step_bytes(262144)
    assert abs(large_alloc - small_alloc) <= 1024, (small_alloc, large_alloc)
    assert abs(large_swept - small_swept) <= 1024, (small_swept, large_swept)
    assert large_alloc < 256 * 1024
    fused_alloc, _ = _step_bytes(262144)
    assert fused_alloc < large_alloc  # no key recomputed: fewer bytes than the torch step


def test_the_torch_steps_flops_stay_bounded(monkeypatch):
    """The FLOP bound of test_decode counts torch ops, which the fused step's C is not:
    it holds for the torch step too (run with the fused step off)."""
    with fused_decode(False):
        test_decode.test_lsh_step_flops_are_bounded_independently_of_context_and_kv_ones_grow(
            monkeypatch
        )
