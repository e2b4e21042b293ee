"""ReformerLM: shapes, memory flat in depth, learning, causality, and clear errors."""

from __future__ import annotations

import pytest
import torch

from baselines import TransformerLM
from reformer.config import ReformerConfig
from reformer.embedding import AxialPositionalEmbedding
from reformer.model import ReformerLM
from suites.harness.saved_bytes import saved_bytes

TINY = dict(
    vocab_size=32,
    d_model=32,
    n_heads=2,
    n_layers=2,
    d_ff=64,
    n_hashes=2,
    bucket_size=8,
    max_seq_len=64,
)


def _config(**changes) -> ReformerConfig:
    return ReformerConfig(**{**TINY, **changes})


@pytest.mark.parametrize("attention", ["lsh", "full", "sdpa"])
@pytest.mark.parametrize("reversible", [True, False])
def test_logits_shape_and_finite(attention, reversible):
    model = ReformerLM(_config(attention=attention, reversible=reversible, ff_chunks=2))
    tokens = torch.randint(0, 32, (3, 40))
    logits = model(tokens)
    assert logits.shape == (3, 40, 32) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all()
    model.loss(tokens).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_axial_embedding_positions_and_parameter_count():
    model = ReformerLM(_config(axial_shape=(8, 8)))
    axial = model.position_embedding
    assert isinstance(axial, AxialPositionalEmbedding)
    assert sum(p.numel() for p in axial.parameters()) == 8 * 16 + 8 * 16
    table = axial(19)  # position p = i * 8 + j -> [row[i], col[j]]
    assert table.shape == (19, 32)
    torch.testing.assert_close(table[18], torch.cat([axial.row[2], axial.col[2]]))
    assert model(torch.randint(0, 32, (1, 19))).shape == (1, 19, 32)


def _saved(config: ReformerConfig, tokens: torch.Tensor) -> int:
    torch.manual_seed(0)
    model = ReformerLM(config)
    nbytes, _ = saved_bytes(lambda: model.loss(tokens))
    return nbytes


def test_saved_bytes_flat_in_depth_when_reversible():
    tokens = torch.randint(0, 32, (1, 256))
    config = _config(d_ff=128, max_seq_len=256, bucket_size=16, ff_chunks=4)
    shallow = _saved(config.replace(n_layers=2), tokens)
    deep = _saved(config.replace(n_layers=8), tokens)
    assert deep <= 1.25 * shallow

    plain = config.replace(reversible=False, ff_chunks=1)
    plain_ratio = _saved(plain.replace(n_layers=8), tokens) / _saved(
        plain.replace(n_layers=2), tokens
    )
    assert 3.0 <= plain_ratio <= 4.0  # 4x layers; the embedding and head do not grow


def _repeating_tokens(seq_len=32, period=8) -> torch.Tensor:
    pattern = torch.tensor([3, 1, 4, 15, 9, 2, 6, 5])[:period]
    return pattern.repeat(seq_len // period).unsqueeze(0)


@pytest.mark.parametrize(
    "model_class,changes",
    [
        (ReformerLM, dict(attention="lsh", reversible=True, ff_chunks=2)),
        (ReformerLM, dict(attention="full", reversible=False)),
        (TransformerLM, dict(attention="full")),
        (TransformerLM, dict(attention="sdpa")),
    ],
    ids=["reformer-lsh-reversible", "reformer-full", "transformer-full", "transformer-sdpa"],
)
def test_overfits_a_repeating_sequence(model_class, changes):
    torch.manual_seed(0)
    model = model_class(_config(**changes))
    tokens = _repeating_tokens()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(300):
        optimizer.zero_grad(set_to_none=True)
        loss = model.loss(tokens)
        loss.backward()
        optimizer.step()
        if loss.item() < 0.1:
            break
    assert loss.item() < 0.1


def _changed_after(tokens: torch.Tensor, t: int) -> torch.Tensor:
    other = tokens.clone()
    other[:, t + 1 :] = (other[:, t + 1 :] + 1 + torch.arange(other.shape[1] - t - 1)) % 32
    return other


@pytest.mark.parametrize(
    "model_class,changes",
    [
        (ReformerLM, dict(attention="full")),
        (ReformerLM, dict(attention="sdpa", reversible=False)),
        (ReformerLM, dict(attention="lsh", bucket_size=64)),  # one chunk per round: exact
        (TransformerLM, dict(attention="full")),
        (TransformerLM, dict(attention="sdpa")),
    ],
)
def test_logits_do_not_depend_on_later_tokens(model_class, changes):
    torch.manual_seed(0)
    model = model_class(_config(**changes)).eval()
    tokens = torch.randint(0, 32, (2, 48))
    t = 20
    other = _changed_after(tokens, t)
    state = [b.rng_state() for b in model.blocks] if model_class is ReformerLM else None
    with torch.no_grad():
        before = model(tokens)
        if state is not None:  # the same hash rotations for both inputs
            for block, block_state in zip(model.blocks, state, strict=True):
                block.set_rng_state(block_state)
        after = model(other)
    torch.testing.assert_close(after[:, : t + 1], before[:, : t + 1], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(after[:, t + 1 :], before[:, t + 1 :])


@pytest.mark.parametrize("reversible", [True, False])
def test_lsh_gradient_from_future_embeddings_is_exactly_zero(reversible):
    torch.manual_seed(0)
    model = ReformerLM(
        _config(attention="lsh", reversible=reversible, ff_chunks=2, n_layers=3)
    ).double()
    tokens = torch.randint(0, 32, (2, 64))  # 8 chunks per round: hashing decides neighbours
    captured = {}

    def keep(_module, _inputs, output):
        output.retain_grad()
        captured["embeddings"] = output

    model.token_embedding.register_forward_hook(keep)
    logits = model(tokens)
    t = 30
    logits[:, t].square().sum().backward()
    grad = captured["embeddings"].grad
    assert torch.count_nonzero(grad[:, t + 1 :]) == 0
    assert torch.count_nonzero(grad[:, : t + 1]) > 0


@pytest.mark.parametrize(
    "changes,field",
    [
        (dict(d_model=30, n_heads=4), "n_heads"),
        (dict(attention="linear"), "attention"),
        (dict(ff_chunks=0), "ff_chunks"),
    ],
)
def test_bad_config_errors_name_the_field(changes, field):
    with pytest.raises(ValueError, match=field):
        _config(**changes)


@pytest.mark.parametrize("model_class", [ReformerLM, TransformerLM])
def test_bad_tokens_errors(model_class):
    model = model_class(_config(attention="full"))
    with pytest.raises(ValueError, match="max_seq_len=64"):
        model(torch.zeros(1, 65, dtype=torch.long))
    with pytest.raises(ValueError, match="vocab_size=32"):
        model(torch.tensor([[0, 5, 32]]))
    with pytest.raises(ValueError, match="vocab_size=32"):
        model(torch.tensor([[0, -1, 3]]))
    with pytest.raises(ValueError, match="int64"):
        model(torch.zeros(1, 4))
    with pytest.raises(ValueError, match="seq_len"):
        model(torch.zeros(4, dtype=torch.long))


def test_transformer_rejects_lsh():
    with pytest.raises(ValueError, match="'full', 'sdpa'"):
        TransformerLM(_config(attention="lsh"))
