"""Incremental decoding: the LSH rule against its twin, caches against the full forward,
and generate's arguments."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from baselines import TransformerLM
from reformer import ReformerConfig, ReformerLM
from reformer.decode import KVCache, LSHCache
from reformer.generate import incremental_logits
from reformer.lsh import LSHSelfAttention
from reformer.lsh.hashing import hash_vectors
from reformer.reference import lsh_decode_keys_reference, lsh_decode_reference

SMALL = dict(vocab_size=50, d_model=32, n_heads=2, n_layers=2, d_ff=64, max_seq_len=512)


def _lsh_layer(n_hashes=3, bucket_size=4, n_buckets=8, seed=0):
    config = ReformerConfig(
        **SMALL | {"n_layers": 1}, n_hashes=n_hashes, bucket_size=bucket_size, n_buckets=n_buckets
    )
    torch.manual_seed(seed)
    return LSHSelfAttention(config).double()


@pytest.mark.parametrize("n_buckets", [8, (4, 6)])
def test_key_sets_and_outputs_match_the_twin_over_300_steps(n_buckets):
    """Few buckets and small chunks, so lists overflow and rounds share keys; the prompt
    goes through the bulk insertion, the rest one position at a time. Flat and
    factorised hashes."""
    layer = _lsh_layer(n_buckets=n_buckets)
    batch, length, prompt = 2, 300, 17
    x = torch.randn(batch, length, 32, dtype=torch.float64)
    cache = layer.new_cache(batch, length, x)
    qk, v = layer.project(x)  # (B, H, L, D)
    all_buckets = hash_vectors(qk, cache.rotations, cache.factors)  # (B, H, R, L)
    layer.cached(x[:, :prompt], cache)
    weights = layer._head_weights()
    for t in range(prompt, length):
        positions, valid = cache.key_positions(all_buckets[..., t])
        assert positions.shape[-1] <= (3 + 1) * 4  # (n_hashes + 1) · bucket_size at most
        out = cache.attend(qk[:, :, t], v[:, :, t], all_buckets[..., t], weights)
        for b in range(batch):
            for h in range(2):
                got = set(positions[b, h][valid[b, h]].tolist())
                expected = lsh_decode_keys_reference(all_buckets[b, h, :, : t + 1], 4)
                assert got == expected, (t, b, h)
                assert all(s < t for s in got)  # causal: only the past
                reference = lsh_decode_reference(qk[b, h, : t + 1], v[b, h, : t + 1], expected)
                torch.testing.assert_close(out[b, h], reference, rtol=1e-10, atol=1e-12)
        cache.store(x[:, t : t + 1], all_buckets[..., t : t + 1])


def test_bulk_insertion_equals_one_at_a_time():
    layer = _lsh_layer(bucket_size=3)
    x = torch.randn(2, 90, 32, dtype=torch.float64)
    bulk, single = (layer.new_cache(2, 90, x) for _ in range(2))
    single.rotations = bulk.rotations
    buckets = bulk.buckets(layer.project(x)[0])
    bulk.store(x[:, :50], buckets[..., :50])
    bulk.store(x[:, 50:90], buckets[..., 50:90])
    for t in range(90):
        single.store(x[:, t : t + 1], buckets[..., t : t + 1])
    assert torch.equal(bulk.counts, single.counts)
    assert torch.equal(bulk.table, single.table)
    assert torch.equal(bulk.inputs, single.inputs)


def test_first_position_sees_only_itself():
    layer = _lsh_layer()
    x = torch.randn(1, 1, 32, dtype=torch.float64)
    cache = layer.new_cache(1, 4, x)
    qk, v = layer.project(x)
    out = cache.attend(qk[:, :, 0], v[:, :, 0], cache.buckets(qk)[..., 0], layer._head_weights())
    assert torch.equal(out, v[:, :, 0])


CACHED_MODELS = [
    ("reformer", "lsh", True),
    ("reformer", "lsh", False),
    ("reformer", "full", True),
    ("reformer", "sdpa", False),
    ("transformer", "full", False),
    ("transformer", "sdpa", False),
]


@pytest.mark.parametrize(("family", "attention", "reversible"), CACHED_MODELS)
@pytest.mark.parametrize("axial", [False, True])
def test_incremental_logits_equal_the_full_forward(family, attention, reversible, axial):
    """With one chunk covering the context, LSH attention is exact and so is the rule."""
    config = ReformerConfig(
        **SMALL,
        attention=attention,
        reversible=reversible,
        n_hashes=3,
        bucket_size=64,
        axial_shape=(16, 32) if axial else None,
    )
    torch.manual_seed(0)
    model = (ReformerLM if family == "reformer" else TransformerLM)(config)
    tokens = torch.randint(0, 50, (2, 48))
    with torch.no_grad():
        full = model(tokens)
    incremental = incremental_logits(model, tokens, prompt_len=5)
    torch.testing.assert_close(incremental, full[:, 4:], rtol=1e-5, atol=1e-5)


def test_generate_is_reproducible_and_leaves_the_global_rng_alone():
    config = ReformerConfig(**SMALL, n_hashes=2, bucket_size=8)
    model, twin = ReformerLM(config), ReformerLM(config)
    twin.load_state_dict(model.state_dict())
    prompt = torch.randint(0, 50, (2, 7))
    state = torch.get_rng_state()
    greedy = model.generate(prompt, 30, temperature=0)
    assert torch.equal(torch.get_rng_state(), state)
    assert greedy.shape == (2, 37) and torch.equal(greedy[:, :7], prompt)
    # Rotations come from each layer's generator (seeded by config.seed), sampling from
    # the given one: two models with the same weights and seeds generate the same tokens.
    twin.generate(prompt, 30, temperature=0)
    first = model.generate(prompt, 30, top_k=5, generator=torch.Generator().manual_seed(3))
    again = twin.generate(prompt, 30, top_k=5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(first, again) and int(first.max()) < 50


def test_generate_without_cache_matches_with_cache_when_exact():
    config = ReformerConfig(**SMALL, n_hashes=2, bucket_size=64)
    model = ReformerLM(config)
    prompt = torch.randint(0, 50, (1, 5))
    cached = model.generate(prompt, 20, temperature=0)
    recomputed = model.generate(prompt, 20, temperature=0, use_cache=False)
    assert torch.equal(cached, recomputed)


def test_top_k_one_is_greedy():
    model = TransformerLM(ReformerConfig(**SMALL, attention="sdpa"))
    prompt = torch.randint(0, 50, (1, 4))
    greedy = model.generate(prompt, 12, temperature=0)
    top1 = model.generate(prompt, 12, temperature=2.0, top_k=1, generator=torch.Generator())
    assert torch.equal(greedy, top1)


def _decode_step_flops(model, context: int) -> int:
    caches = model.new_caches(1, context + 1, next(model.parameters()))
    with torch.no_grad():
        model.decode(torch.randint(0, 50, (1, context)), caches)
        with FlopCounterMode(display=False) as counter:
            model.decode(torch.randint(0, 50, (1, 1)), caches)
    return counter.get_total_flops()


def _widest_key_set(self, buckets):
    """Every candidate slot kept (no compaction): the most keys one step can recompute."""
    batch, n_heads = buckets.shape[:2]
    width = (self.n_hashes + 1) * self.bucket_size
    positions = torch.zeros(batch, n_heads, width, dtype=torch.int64)
    return positions, torch.ones_like(positions, dtype=torch.bool)


def test_lsh_step_flops_are_bounded_independently_of_context_and_kv_ones_grow(monkeypatch):
    """At a fixed bucket count. (The default count, 2·T/bucket_size, is factorised, so the
    hash of one token grows as sqrt(T): 48 rotation columns at 64K, chunk 64.) A step
    recomputes at most (n_hashes + 1) · bucket_size keys per head, whatever the context."""
    config = ReformerConfig(
        **SMALL | {"max_seq_len": 4096}, n_hashes=2, bucket_size=16, n_buckets=32
    )
    lsh = ReformerLM(config)
    short, long = _decode_step_flops(lsh, 256), _decode_step_flops(lsh, 2048)
    with monkeypatch.context() as patch:
        patch.setattr(LSHCache, "key_positions", _widest_key_set)
        bound = _decode_step_flops(lsh, 256)
        assert _decode_step_flops(lsh, 2048) == bound
    assert short <= bound and long <= bound
    kv = ReformerLM(config.replace(attention="full"))
    short, long = _decode_step_flops(kv, 256), _decode_step_flops(kv, 2048)
    attention_flops = 2 * 2 * SMALL["n_layers"] * SMALL["d_model"]  # q·k and p·v per key
    assert long - short == attention_flops * (2048 - 256)


def test_lsh_cache_holds_fewer_bytes_per_token_than_a_kv_cache():
    """One vector per position (shared QK) plus the bucket table, against keys and values."""
    config = ReformerConfig()  # the default model the suites measure
    like = torch.empty(0)
    context = 16384
    lsh = LSHCache(
        batch=1,
        n_heads=config.n_heads,
        d_head=config.d_head,
        n_hashes=config.n_hashes,
        bucket_size=config.bucket_size,
        n_buckets=None,
        capacity=context,
        generator=torch.Generator(),
        like=like,
    )
    kv = KVCache(1, config.n_heads, config.d_head, context, like)
    assert lsh.nbytes() < kv.nbytes()


BAD_ARGUMENTS = [
    ({"max_new_tokens": -1}, "max_new_tokens"),
    ({"max_new_tokens": 2.5}, "max_new_tokens"),
    ({"max_new_tokens": 600}, "max_seq_len"),
    ({"temperature": -0.1}, "temperature"),
    ({"temperature": float("nan")}, "temperature"),
    ({"temperature": "hot"}, "temperature"),
    ({"top_k": 0}, "top_k"),
    ({"top_k": 51}, "top_k"),
    ({"generator": 3}, "generator"),
    ({"use_cache": "yes"}, "use_cache"),
    ({"prompt": torch.zeros(1, 0, dtype=torch.long)}, "prompt"),
    ({"prompt": torch.zeros(4, dtype=torch.long)}, "prompt"),
    ({"prompt": torch.zeros(1, 3)}, "prompt dtype"),
    ({"prompt": torch.full((1, 3), 50)}, "vocab_size"),
]


@pytest.mark.parametrize(("change", "named"), BAD_ARGUMENTS)
def test_bad_arguments_are_refused_by_name(change, named):
    model = ReformerLM(ReformerConfig(**SMALL, n_hashes=2, bucket_size=8))
    arguments = {"prompt": torch.zeros(1, 3, dtype=torch.long), "max_new_tokens": 4} | change
    prompt = arguments.pop("prompt")
    max_new_tokens = arguments.pop("max_new_tokens")
    with pytest.raises(ValueError, match=named):
        model.generate(prompt, max_new_tokens, **arguments)


def test_a_non_causal_model_cannot_generate():
    model = ReformerLM(ReformerConfig(**SMALL, causal=False, bucket_size=8))
    with pytest.raises(ValueError, match="causal"):
        model.generate(torch.zeros(1, 3, dtype=torch.long), 2)
