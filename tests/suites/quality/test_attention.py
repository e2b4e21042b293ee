"""Running a trained shared-QK model with full attention or LSH-N, by per-call arguments."""

import pytest
import torch

from reformer import ReformerConfig
from reformer.model import ReformerLM
from reformer.reference import exact_shared_qk_attention
from reformer.seeds import layer_seed
from suites.quality.attention import attention_arguments, lsh_layers, spec_arguments
from suites.rows.names import parse_run_attention

L = 32
CONFIG = ReformerConfig(
    vocab_size=16,
    d_model=32,
    n_heads=2,
    n_layers=2,
    d_ff=32,
    n_hashes=1,
    bucket_size=4,
    reversible=False,
    max_seq_len=L,
)


def _model(config=CONFIG):
    torch.manual_seed(0)
    return ReformerLM(config).eval()


def test_shared_full_is_exact_shared_qk_attention():
    model = _model()
    layer = lsh_layers(model)[0]
    x = torch.randn(2, L, CONFIG.d_model)
    heads = (2, L, CONFIG.n_heads, CONFIG.d_head)
    qk = layer.to_qk(x).view(heads).transpose(1, 2)
    v = layer.to_v(x).view(heads).transpose(1, 2)
    exact = exact_shared_qk_attention(qk, v, causal=True).transpose(1, 2).reshape(2, L, -1)
    arguments = attention_arguments(model, "shared-full")
    assert arguments == {"exact": True}
    torch.testing.assert_close(layer(x, **arguments), layer.to_out(exact), atol=1e-5, rtol=1e-5)


def test_shared_full_differs_from_lsh_with_several_chunks():
    model, tokens = _model(), torch.randint(0, 16, (2, L))
    full = model(tokens, **attention_arguments(model, "shared-full"))
    lsh = model(tokens, **attention_arguments(model, "lsh-1", seed=0))
    assert not torch.allclose(full, lsh, atol=1e-4)


@pytest.mark.parametrize("n_hashes", [2, 8])
def test_eval_with_other_hash_rounds_really_uses_them(n_hashes):
    """A model run as LSH-n computes what a model built with n_hashes=n computes."""
    trained, tokens = _model(), torch.randint(0, 16, (2, L))
    before = trained(tokens, **attention_arguments(trained, "lsh-1", seed=5))
    built = _model(CONFIG.replace(n_hashes=n_hashes))
    built.load_state_dict(trained.state_dict())
    for layer in lsh_layers(built):
        layer.generator.manual_seed(layer_seed(5, layer.layer_idx))
    arguments = attention_arguments(trained, f"lsh-{n_hashes}", seed=5)
    assert arguments == {"n_hashes": n_hashes}
    switched = trained(tokens, **arguments)
    torch.testing.assert_close(switched, built(tokens))
    assert not torch.allclose(switched, before, atol=1e-4)


def test_reseeding_makes_evaluation_repeatable():
    model, tokens = _model(), torch.randint(0, 16, (2, L))
    first = model(tokens, **attention_arguments(model, "lsh-2", seed=1))
    torch.testing.assert_close(model(tokens, **attention_arguments(model, "lsh-2", seed=1)), first)


def test_the_model_keeps_its_weights_and_its_config():
    model, tokens = _model(), torch.randint(0, 16, (2, L))
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    for spec in ("shared-full", "lsh-8", "lsh-1"):
        model(tokens, **attention_arguments(model, spec))
        assert model.config == CONFIG
        assert all(layer.config == CONFIG for layer in lsh_layers(model))
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in weights.items())


@pytest.mark.parametrize("spec", ["lsh", "lsh-0", "LSH4", "flash", "full"])
def test_unknown_specs_are_refused_with_the_allowed_values(spec):
    with pytest.raises(ValueError, match="allowed"):
        parse_run_attention(spec)


def test_sdpa_is_not_a_shared_qk_spec():
    with pytest.raises(ValueError, match="shared-QK"):
        spec_arguments("sdpa")


def test_a_model_without_lsh_layers_cannot_switch():
    model = ReformerLM(CONFIG.replace(attention="sdpa"))
    with pytest.raises(ValueError, match="shared-QK"):
        attention_arguments(model, "lsh-2")


def test_local_runs_on_local_layers_only_and_lsh_on_lsh_layers_only():
    lsh, local = _model(), _model(CONFIG.replace(attention="local"))
    assert attention_arguments(local, "local") == {}
    assert attention_arguments(local, "shared-full") == {"exact": True}
    with pytest.raises(ValueError, match="needs local layers"):
        attention_arguments(lsh, "local")
    with pytest.raises(ValueError, match="needs LSH layers"):
        attention_arguments(local, "lsh-2")


def test_a_trained_model_is_evaluated_with_the_layers_its_spec_needs():
    """The weights of an LSH-trained model loaded into local layers compute local
    attention, and the other way round; shared-full keeps the trained kind."""
    from suites.quality.attention import layer_attention
    from suites.quality.tasks import Run, load_trained
    from suites.quality.train import Schedule

    schedule = Schedule(steps=1, batch=1, seq_len=L, lr=1e-3, warmup_steps=0, eval_every=1)
    run = Run(
        task="duplication",
        family="reformer",
        train_attention="lsh-1",
        config=CONFIG.replace(vocab_size=128),
        schedule=schedule,
        eval_size=1,
    )
    trained = ReformerLM(run.config).eval()
    as_local = load_trained(run, trained.state_dict(), "local")
    assert [type(layer).__name__ for layer in lsh_layers(as_local)] == ["LocalSelfAttention"] * 2
    tokens = torch.randint(0, 128, (2, L), generator=torch.Generator().manual_seed(0))
    built = ReformerLM(run.config.replace(attention="local")).eval()
    built.load_state_dict(trained.state_dict())
    torch.testing.assert_close(as_local(tokens), built(tokens), rtol=0, atol=0)
    assert layer_attention("shared-full", "local") == "local"
    assert layer_attention("decode-lsh-2", "lsh") == "lsh"
