"""Per-call attention arguments: ``n_hashes``, ``exact`` and ``padding_mask`` on the layers
and through ReformerLM (forward, loss, reversible backward), each against a slow twin or a
model built with the same setting in its config."""

from __future__ import annotations

import pytest
import torch

from reformer.attention import ATTENTION_REGISTRY, build_attention
from reformer.config import ReformerConfig
from reformer.exact import exact_attention
from reformer.loss import next_token_loss, next_token_loss_reference
from reformer.lsh import LSHSelfAttention, lsh_attention
from reformer.model import ReformerLM
from reformer.reference import exact_shared_qk_attention, lsh_attention_reference
from reformer.reversible import plain_autograd

L = 32
NAMES = sorted(ATTENTION_REGISTRY)


def _config(**changes) -> ReformerConfig:
    base = dict(
        vocab_size=16,
        d_model=16,
        n_heads=2,
        n_layers=2,
        d_ff=32,
        attention="lsh",
        n_hashes=2,
        bucket_size=4,
        reversible=False,
        max_seq_len=L,
    )
    return ReformerConfig(**{**base, **changes})


def _model(**changes) -> ReformerLM:
    torch.manual_seed(0)
    return ReformerLM(_config(**changes)).double().eval()


def _tokens(batch: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 16, (batch, L), generator=torch.Generator().manual_seed(seed))


def _same_draws(model: ReformerLM, calls):
    """Each of ``calls`` (functions of the model) run from the same generator states."""
    states = [block.rng_state() for block in model.blocks]
    results = []
    for call in calls:
        for block, state in zip(model.blocks, states, strict=True):
            block.set_rng_state(state)
        results.append(call(model))
    return results


def _heads(layer: LSHSelfAttention, x: torch.Tensor):
    return layer.project(x)  # qk, v (B, H, L, d_head)


# -- the layer ---------------------------------------------------------------------------


@pytest.mark.parametrize("n_hashes", [1, 3])
def test_layer_n_hashes_per_call_equals_a_layer_built_with_it(n_hashes):
    torch.manual_seed(0)
    layer = LSHSelfAttention(_config()).double()
    torch.manual_seed(0)
    built = LSHSelfAttention(_config(n_hashes=n_hashes)).double()
    x = torch.randn(2, L, 16, dtype=torch.float64)
    torch.testing.assert_close(layer(x, n_hashes=n_hashes), built(x), rtol=0, atol=0)
    assert layer.config.n_hashes == 2  # the config is never touched


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("padded", [False, True])
def test_layer_exact_mode_equals_the_reference(causal, padded):
    torch.manual_seed(0)
    layer = LSHSelfAttention(_config(causal=causal)).double()
    x = torch.randn(2, L, 16, dtype=torch.float64)
    mask = torch.arange(L) < torch.tensor([[L], [L - 7]]) if padded else None
    qk, v = _heads(layer, x)
    expected = exact_shared_qk_attention(qk, v, causal=causal, padding_mask=mask)
    expected = layer.to_out(expected.transpose(1, 2).reshape(2, L, 16))
    state = layer.generator.get_state()
    torch.testing.assert_close(layer(x, mask, exact=True), expected, rtol=1e-12, atol=1e-12)
    assert torch.equal(layer.generator.get_state(), state)  # exact draws no rotations


def test_exact_mode_equals_lsh_with_one_chunk_over_the_sequence():
    """The quality suite's former stand-in for exact attention: one round, two buckets,
    bucket_size = L (one chunk that holds every key)."""
    model, tokens = _model(), _tokens()
    one_chunk = _model(n_hashes=1, n_buckets=2, bucket_size=L)
    torch.testing.assert_close(model(tokens, exact=True), one_chunk(tokens), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("causal", [True, False])
def test_exact_attention_shared_qk_in_float32_matches_float64(causal):
    qk = torch.randn(2, 2, L, 8, dtype=torch.float64)
    v = torch.randn(2, 2, L, 8, dtype=torch.float64)
    keys = torch.nn.functional.normalize(qk, dim=-1)
    wide = exact_attention(qk, keys, v, causal=causal, self_logit=-1e5)
    narrow = exact_attention(qk.float(), keys.float(), v.float(), causal=causal, self_logit=-1e5)
    torch.testing.assert_close(narrow.double(), wide, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("sdpa", [False, True])
@pytest.mark.parametrize("n_new", [1, 5, L])
def test_exact_attention_separate_qk_equals_a_plain_masked_softmax(sdpa, n_new):
    q = torch.randn(2, 2, n_new, 8, dtype=torch.float64)
    k, v = (torch.randn(2, 2, L, 8, dtype=torch.float64) for _ in range(2))
    mask = torch.arange(L) < torch.tensor([[L], [L - 3]])
    scores = q @ k.transpose(-1, -2) / 8**0.5
    query_pos = torch.arange(L - n_new, L)[:, None]
    allowed = (torch.arange(L)[None, :] <= query_pos) & mask[:, None, None, :]
    allowed |= torch.arange(L)[None, :] == query_pos
    expected = scores.masked_fill(~allowed, float("-inf")).softmax(-1) @ v
    got = exact_attention(q, k, v, causal=True, padding_mask=mask, sdpa=sdpa)
    torch.testing.assert_close(got, expected)


def test_padded_positions_sort_last_and_do_not_move_real_outputs():
    """Several chunks: whatever the padded positions hold, real outputs are unchanged (they
    never share a chunk slot with, nor move, a real position), and the reference agrees."""
    generator = torch.Generator().manual_seed(3)
    qk = torch.randn(2, 2, L, 8, dtype=torch.float64, generator=generator)
    v = torch.randn(2, 2, L, 8, dtype=torch.float64, generator=generator)
    mask = torch.arange(L) < torch.tensor([[L - 5], [L - 11]])
    other_qk = torch.where(mask[:, None, :, None], qk, 10 * torch.randn_like(qk))
    args = dict(n_hashes=2, bucket_size=4, causal=False, seed=0, padding_mask=mask)
    out, buckets = lsh_attention(qk, v, return_buckets=True, **args)
    moved = lsh_attention(other_qk, v, **args)
    real = mask[:, None, :, None].expand_as(out)
    torch.testing.assert_close(out[real], moved[real], rtol=0, atol=0)
    assert (buckets[~mask[:, None, None, :].expand_as(buckets)] == buckets.max()).all()
    expected = lsh_attention_reference(
        qk, v, buckets, bucket_size=4, causal=False, padding_mask=mask
    )
    torch.testing.assert_close(out[real], expected[real])


# -- the model ---------------------------------------------------------------------------


@pytest.mark.parametrize("reversible", [False, True])
def test_model_n_hashes_per_call_equals_a_model_built_with_it(reversible):
    model, tokens = _model(reversible=reversible), _tokens()
    built = _model(reversible=reversible, n_hashes=4)
    switched, own = _same_draws(model, [lambda m: m(tokens, n_hashes=4), lambda m: m(tokens)])
    torch.testing.assert_close(switched, built(tokens), rtol=0, atol=0)
    assert not torch.allclose(switched, own)


@pytest.mark.parametrize(
    "call",
    [
        {"n_hashes": 3},
        {"exact": True},
        {"padding_mask": "right"},
        {"n_hashes": 1, "padding_mask": "right"},
    ],
)
def test_reversible_backward_replays_the_call_arguments(call):
    """The memory-frugal backward recomputes each layer with the forward's arguments: its
    gradients equal plain autograd's (wrong rounds or a missing mask would not)."""
    model = _model(reversible=True, n_layers=3)
    tokens = _tokens()
    if call.get("padding_mask") == "right":
        call = {**call, "padding_mask": torch.arange(L) < torch.tensor([[L], [L - 9]])}
    states = [block.rng_state() for block in model.blocks]
    grads = []
    for plain in (True, False):
        for block, state in zip(model.blocks, states, strict=True):
            block.set_rng_state(state)
        model.zero_grad(set_to_none=True)
        with plain_autograd() if plain else torch.enable_grad():
            loss = model.loss(tokens, **call)
        loss.backward()
        grads.append({name: p.grad.clone() for name, p in model.named_parameters()})
    for name, expected in grads[0].items():
        torch.testing.assert_close(grads[1][name], expected, rtol=1e-9, atol=1e-11, msg=name)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("reversible", [False, True])
@pytest.mark.parametrize("exact", [False, True])
@pytest.mark.parametrize("causal", [True, False])
def test_logits_at_real_positions_ignore_right_padding(name, reversible, exact, causal):
    model = _model(attention=name, reversible=reversible, causal=causal)
    tokens = _tokens()
    lengths = torch.tensor([[L - 6], [L - 13]])
    mask = torch.arange(L) < lengths
    other = torch.where(mask, tokens, (tokens + 7) % 16)
    logits, moved = _same_draws(
        model, [lambda m, t=t: m(t, mask, exact=exact) for t in (tokens, other)]
    )
    torch.testing.assert_close(logits[mask], moved[mask], rtol=1e-12, atol=1e-12)
    if not causal:  # without the mask the padded tokens are seen: the check is not vacuous
        unmasked = _same_draws(
            model, [lambda m, t=t: m(t, exact=exact)[mask] for t in (tokens, other)]
        )
        assert not torch.allclose(*unmasked)


@pytest.mark.parametrize("name", NAMES)
def test_padding_mask_agrees_with_the_layer_called_directly(name):
    """ReformerLM hands the mask to every layer: one layer's model output equals the
    embedding, block and head run by hand with the mask."""
    model = _model(attention=name, n_layers=1)
    tokens, mask = _tokens(), torch.arange(L) < torch.tensor([[L], [L - 9]])
    block = model.blocks[0]
    state = block.rng_state()
    h = model.token_embedding(tokens) + model.position_embedding(L)
    h = h + block.attention(block.attn_norm(h), mask)
    expected = model.head(model.norm(h + block.ff(h)))
    block.set_rng_state(state)
    torch.testing.assert_close(model(tokens, mask), expected)


def test_loss_ignores_padded_targets_and_matches_the_reference():
    model, tokens = _model(), _tokens()
    mask = torch.arange(L) < torch.tensor([[L], [L - 9]])
    other = torch.where(mask, tokens, (tokens + 5) % 16)
    loss, moved, logits = _same_draws(
        model,
        [
            lambda m: m.loss(tokens, mask),
            lambda m: m.loss(other, mask),
            lambda m: m(tokens, mask)[:, :-1],
        ],
    )
    torch.testing.assert_close(moved, loss, rtol=1e-12, atol=1e-12)
    real = mask[:, 1:]
    expected = torch.nn.functional.cross_entropy(logits[real], tokens[:, 1:][real])
    torch.testing.assert_close(loss, expected)


def test_chunked_loss_with_a_mask_equals_the_reference():
    head = torch.nn.Linear(8, 16).double()
    hidden = torch.randn(3, L, 8, dtype=torch.float64)
    tokens, mask = _tokens(3), torch.arange(L) < torch.tensor([[L], [L - 9], [4]])
    expected = next_token_loss_reference(head, hidden, tokens, target_mask=mask)
    got = next_token_loss(head, hidden, tokens, chunk_tokens=7, target_mask=mask)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_decoding_caches_take_n_hashes():
    model = _model()
    caches = model.new_caches(1, L, torch.zeros(1, dtype=torch.float64), n_hashes=5)
    assert all(cache.n_hashes == 5 for cache in caches)
    assert model.config.n_hashes == 2


# -- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "match"),
    [
        ({"padding_mask": torch.ones(2, L, dtype=torch.int64)}, "padding_mask dtype"),
        ({"padding_mask": torch.ones(2, L - 1, dtype=torch.bool)}, r"padding_mask shape"),
        ({"padding_mask": [[True] * L] * 2}, "padding_mask must be"),
        ({"n_hashes": 0}, "n_hashes=0 must be None or an int >= 1"),
        ({"n_hashes": True}, "n_hashes=True must be"),
        ({"n_hashes": 2.0}, "n_hashes=2.0 must be"),
        ({"exact": 1}, "exact"),
        ({"exact": True, "n_hashes": 2}, "not both"),
    ],
)
def test_bad_call_arguments_name_the_argument(call, match):
    model = _model()
    with pytest.raises(ValueError, match=match):
        model(_tokens(), **call)
    with pytest.raises(ValueError, match=match):
        model.loss(_tokens(), **call)


@pytest.mark.parametrize("name", ["full", "sdpa"])
def test_n_hashes_is_refused_where_nothing_hashes(name):
    model = _model(attention=name)
    with pytest.raises(ValueError, match="attention='lsh'"):
        model(_tokens(), n_hashes=2)
    with pytest.raises(ValueError, match="attention='lsh'"):
        model.new_caches(1, L, torch.zeros(1), n_hashes=2)
    layer = build_attention(_config(attention=name))
    with pytest.raises(ValueError, match="attention='lsh'"):
        layer(torch.randn(1, L, 16), n_hashes=2)
    torch.testing.assert_close(model(_tokens(), exact=True), model(_tokens()))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("n_new", [1, 5, L])
def test_shared_qk_exact_fused_equals_the_materialised_path(dtype, causal, n_new):
    # Without padding the shared-QK exact path runs through SDPA with an additive mask; an
    # all-True padding mask takes the materialised path (replace the self logit, then mask).
    gen = torch.Generator().manual_seed(3)
    qk = torch.randn(2, 2, L, 8, dtype=dtype, generator=gen)
    q = qk[:, :, L - n_new :].clone().requires_grad_()
    keys = torch.nn.functional.normalize(qk, dim=-1).requires_grad_()
    v = torch.randn(2, 2, L, 8, dtype=dtype, generator=gen).requires_grad_()
    real = torch.ones(2, L, dtype=torch.bool)
    fused = exact_attention(q, keys, v, causal=causal, self_logit=-1e5)
    plain = exact_attention(q, keys, v, causal=causal, self_logit=-1e5, padding_mask=real)
    torch.testing.assert_close(fused, plain)
    grad = torch.randn_like(fused)
    for a, b in zip(
        torch.autograd.grad(fused, (q, keys, v), grad),
        torch.autograd.grad(plain, (q, keys, v), grad),
        strict=True,
    ):
        torch.testing.assert_close(a, b)
