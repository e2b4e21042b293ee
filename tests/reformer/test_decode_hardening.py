"""Decoding's edges: a step's cost does not grow with the context, padding slots never
reach an output, the position limit is named, non-causal models are refused, and the
bucket-mate ring is exercised through the model's own cached path."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from baselines import TransformerLM
from reformer import ReformerConfig, ReformerLM
from reformer.generate import incremental_logits
from reformer.lsh.hashing import hash_vectors
from reformer.reference import lsh_decode_keys_reference, lsh_decode_reference
from tests.reformer.test_decode import SMALL, _lsh_layer

# Ops that write a few indexed elements of their first argument: what they touch is the
# index's size, not the tensor's (the cache's table and inputs are written this way).
_INDEXED_WRITES = ("index_put", "scatter", "index_copy", "index_fill")


class _Bytes(TorchDispatchMode):
    """Bytes a region of code allocates (outputs on storage none of the op's inputs own)
    and sweeps (tensors an in-place op rewrites whole, e.g. ``counts += added``)."""

    def __init__(self) -> None:
        super().__init__()
        self.allocated = 0
        self.swept = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        inputs = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
        owned = {t.untyped_storage().data_ptr() for t in inputs}
        out = func(*args, **kwargs)
        outs = out if isinstance(out, (tuple, list)) else [out]
        name = func._schema.name
        for tensor in (o for o in outs if isinstance(o, torch.Tensor)):
            if tensor.untyped_storage().data_ptr() not in owned:
                self.allocated += tensor.numel() * tensor.element_size()
            elif func._schema.is_mutable and not any(w in name for w in _INDEXED_WRITES):
                self.swept += tensor.numel() * tensor.element_size()
        return out


def _step_bytes(capacity: int) -> tuple[int, int]:
    """Allocated and swept bytes of one decoding step of a 1-layer LSH model whose caches
    hold ``capacity`` positions (the bucket count grows with it: 2 · capacity / 64)."""
    config = ReformerConfig(
        vocab_size=50,
        d_model=32,
        n_heads=2,
        n_layers=1,
        d_ff=64,
        n_hashes=2,
        bucket_size=64,
        max_seq_len=capacity,
        axial_shape=(capacity // 64, 64),
    )
    torch.manual_seed(0)
    model = ReformerLM(config).eval()
    prompt = torch.randint(0, 50, (1, 8))
    with torch.no_grad():
        caches = model.new_caches(1, capacity, next(model.parameters()).detach()[:0])
        model.decode(prompt, caches)
        model.decode(prompt[:, :1], caches)  # warm: lazy set-up is not the step's
        with _Bytes() as counted:
            model.decode(prompt[:, 1:2], caches)
    return counted.allocated, counted.swept


def test_a_steps_allocated_and_swept_bytes_do_not_grow_with_the_context():
    small_alloc, small_swept = _step_bytes(4096)
    large_alloc, large_swept = _step_bytes(262144)
    assert abs(large_alloc - small_alloc) <= 1024, (small_alloc, large_alloc)
    assert abs(large_swept - small_swept) <= 1024, (small_swept, large_swept)
    # The counter sees a sweep when one happens: the table at 256K is 2 MiB per round.
    assert large_alloc < 256 * 1024


def test_padding_slots_of_an_unwritten_cache_never_reach_the_output():
    """The first position's key set is empty: its padding slot reads an unwritten row,
    which may hold NaN. The output is exactly its own v."""
    layer = _lsh_layer()
    x = torch.randn(1, 1, 32, dtype=torch.float64)
    cache = layer.new_cache(1, 4, x)
    cache.inputs.fill_(float("nan"))
    qk, v = layer.project(x)
    out = cache.attend(qk[:, :, 0], v[:, :, 0], cache.buckets(qk)[..., 0], layer._head_weights())
    assert torch.equal(out, v[:, :, 0])


@pytest.mark.parametrize("family", [ReformerLM, TransformerLM])
@pytest.mark.parametrize("axial", [False, True])
def test_decoding_past_max_seq_len_names_the_limit(family, axial):
    config = ReformerConfig(
        **SMALL | {"max_seq_len": 16},
        attention="sdpa" if family is TransformerLM else "lsh",
        bucket_size=8,
        axial_shape=(4, 8) if axial else None,  # 32 positions: more than max_seq_len
    )
    model = family(config).eval()
    like = next(model.parameters()).detach()[:0]
    with torch.no_grad():
        caches = model.new_caches(1, 32, like)
        model.decode(torch.zeros(1, 16, dtype=torch.long), caches)
        with pytest.raises(ValueError, match="max_seq_len=16"):
            model.decode(torch.zeros(1, 1, dtype=torch.long), caches)


def test_incremental_logits_refuses_a_non_causal_model():
    model = ReformerLM(ReformerConfig(**SMALL, causal=False, bucket_size=8))
    with pytest.raises(ValueError, match="causal=False"):
        incremental_logits(model, torch.zeros(1, 6, dtype=torch.long), prompt_len=2)


def test_the_cached_path_matches_the_twin_where_bucket_mates_matter():
    """Context 160 against bucket_size 4, few buckets: the ring overflows and most keys
    come from bucket-mates, not the window. Prompt through the forward, then every later
    position through ``cached`` (what ``decode`` calls), against the from-scratch key set
    and attention of reformer.reference."""
    layer = _lsh_layer(n_hashes=2, bucket_size=4, n_buckets=6)
    batch, length, prompt = 2, 160, 9
    x = torch.randn(batch, length, 32, dtype=torch.float64)
    cache = layer.new_cache(batch, length, x)
    qk, v = layer.project(x)
    buckets = hash_vectors(qk, cache.rotations, cache.factors)
    layer.cached(x[:, :prompt], cache)
    mates_used = 0
    for t in range(prompt, length):
        out = layer.cached(x[:, t : t + 1], cache)  # (B, 1, d_model)
        heads = []
        for b in range(batch):
            per_head = []
            for h in range(2):
                keys = lsh_decode_keys_reference(buckets[b, h, :, : t + 1], 4)
                mates_used += len(keys - set(range(t - 4, t)))
                per_head.append(lsh_decode_reference(qk[b, h, : t + 1], v[b, h, : t + 1], keys))
            heads.append(torch.stack(per_head))
        expected = layer.to_out(torch.stack(heads).reshape(batch, -1))  # heads merged, projected
        torch.testing.assert_close(out[:, 0], expected, rtol=1e-10, atol=1e-12)
    assert mates_used > 1000  # the ring, not the window, supplied most keys
