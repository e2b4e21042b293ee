"""The attention probe (suites.quality.probe) computes what the model computes: its
weights, run through the rest of the model, give the model's own logits under every
attention it names, and its metrics read those weights."""

from __future__ import annotations

import pytest
import torch

from reformer import ReformerConfig
from reformer.model import ReformerLM
from reformer.seeds import layer_seed
from suites.quality.data import duplication_batch
from suites.quality.probe import (
    FULL_WITH_SELF,
    attention_weights,
    finish,
    probe,
    project,
    visible,
)

L = 32
CONFIG = ReformerConfig(
    vocab_size=16,
    d_model=32,
    n_heads=2,
    n_layers=1,
    d_ff=32,
    n_hashes=1,
    bucket_size=4,
    reversible=False,
    max_seq_len=L,
)
SEED = 11


def _model(attention="lsh"):
    torch.manual_seed(0)
    return ReformerLM(CONFIG.replace(attention=attention)).double().eval()


def _tokens():
    return duplication_batch(3, L, torch.Generator().manual_seed(2), vocab_size=16)


def _reseed(model):
    layer = model.blocks[0].attention
    layer.generator.manual_seed(layer_seed(SEED, layer.layer_idx))


@pytest.mark.parametrize(
    "spec,arguments",
    [("shared-full", {"exact": True}), ("lsh-1", {"n_hashes": 1}), ("lsh-4", {"n_hashes": 4})],
)
def test_weights_give_the_models_own_logits(spec, arguments):
    model, tokens = _model(), _tokens()
    _reseed(model)
    with torch.no_grad():
        expected = model(tokens, **arguments)
    _reseed(model)
    projected = project(model, tokens)
    weights, _, _ = attention_weights(spec, projected, model)
    with torch.no_grad():
        got = finish(model, projected, weights)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-9)


def test_local_weights_give_a_local_models_logits():
    model, tokens = _model(), _tokens()
    local = _model("local")
    local.load_state_dict(model.state_dict())
    projected = project(model, tokens)
    weights, _, _ = attention_weights("local", projected, model)
    with torch.no_grad():
        torch.testing.assert_close(
            finish(model, projected, weights), local(tokens), rtol=0, atol=1e-9
        )


def test_full_with_self_lets_a_query_see_itself_at_the_largest_logit():
    model, tokens = _model(), _tokens()
    projected = project(model, tokens)
    weights, logits, seen = attention_weights(FULL_WITH_SELF, projected, model)
    diagonal = torch.diagonal(logits, dim1=-2, dim2=-1)
    others = logits.masked_fill(torch.eye(L, dtype=torch.bool), float("-inf"))
    assert (diagonal[..., 1:] >= others.amax(-1)[..., 1:] - 1e-9).all()
    masked, _, _ = attention_weights("shared-full", projected, model)
    assert (torch.diagonal(weights, dim1=-2, dim2=-1)[..., 1:] > 0.0).all()
    assert torch.diagonal(masked, dim1=-2, dim2=-1)[..., 1:].max() < 1e-30
    assert torch.diagonal(seen, dim1=-2, dim2=-1).all()


def test_local_sees_its_chunk_and_the_one_before_only():
    model, tokens = _model(), _tokens()
    seen = visible("local", project(model, tokens), model)[0, 0]
    assert seen[13].nonzero().squeeze(-1).tolist() == list(range(8, 14))
    assert seen[3].nonzero().squeeze(-1).tolist() == [0, 1, 2, 3]


def test_metrics_are_fractions_and_accuracy_matches_the_weights():
    model = _model()
    batches = [_tokens(), _tokens()]
    found = probe(model, batches, ("shared-full", "local", "lsh-1"), hash_seed=SEED)
    for metrics in found.values():
        for name in ("accuracy", "copy_weight", "self_weight", "copy_seen"):
            assert 0.0 <= metrics[name] <= 1.0, (name, metrics)
    assert found["shared-full"]["copy_seen"] == 1.0  # every earlier key is visible
    assert found["local"]["copy_seen"] == 0.0  # the copy is L / 2 = 16 back, chunks are 4
    assert found["local"]["copy_weight"] == 0.0
