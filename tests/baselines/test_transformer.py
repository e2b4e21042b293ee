"""The TransformerLM baseline: an independent implementation that agrees with ReformerLM's
full-attention, non-reversible configuration in values, parameters and FLOPs."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from baselines import TransformerLM
from reformer.config import ReformerConfig
from reformer.flops import flops_breakdown, model_flops
from reformer.model import ReformerLM

CONFIG = ReformerConfig(
    vocab_size=40,
    d_model=32,
    n_heads=4,
    n_layers=3,
    d_ff=80,
    attention="full",
    reversible=False,
    ff_chunks=1,
    max_seq_len=64,
)


def _copy_into_reformer(baseline: TransformerLM, reformer: ReformerLM) -> None:
    """Load the baseline's weights into ReformerLM's (differently organised) modules."""
    with torch.no_grad():
        reformer.token_embedding.weight.copy_(baseline.tok_emb.weight)
        reformer.position_embedding.weight.copy_(baseline.pos_emb.weight)
        for layer, block in zip(baseline.layers, reformer.blocks, strict=True):
            block.attn_norm.load_state_dict(layer.ln_attn.state_dict())
            q, k, v = layer.qkv.weight.chunk(3, dim=0)
            block.attention.to_q.weight.copy_(q)
            block.attention.to_k.weight.copy_(k)
            block.attention.to_v.weight.copy_(v)
            block.attention.to_out.load_state_dict(layer.proj.state_dict())
            block.ff.norm.load_state_dict(layer.ln_mlp.state_dict())
            block.ff.w_in.load_state_dict(layer.fc.state_dict())
            block.ff.w_out.load_state_dict(layer.fc_out.state_dict())
        reformer.norm.load_state_dict(baseline.ln_f.state_dict())
        reformer.head.load_state_dict(baseline.head.state_dict())


@pytest.mark.parametrize("attention", ["full", "sdpa"])
def test_same_weights_give_same_logits_as_reformer_full(attention):
    torch.manual_seed(0)
    config = CONFIG.replace(attention=attention)
    baseline = TransformerLM(config).double()
    reformer = ReformerLM(config).double()
    _copy_into_reformer(baseline, reformer)
    tokens = torch.randint(0, 40, (2, 50))
    torch.testing.assert_close(reformer(tokens), baseline(tokens), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(reformer.loss(tokens), baseline.loss(tokens), rtol=1e-10, atol=0)


def test_full_and_sdpa_agree():
    torch.manual_seed(0)
    full = TransformerLM(CONFIG).double()
    sdpa = TransformerLM(CONFIG.replace(attention="sdpa")).double()
    sdpa.load_state_dict(full.state_dict())
    tokens = torch.randint(0, 40, (2, 33))
    torch.testing.assert_close(sdpa(tokens), full(tokens), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("attention", ["full", "sdpa"])
def test_parameter_count_equals_reformer_full(attention):
    config = CONFIG.replace(attention=attention)
    count = [sum(p.numel() for p in m(config).parameters()) for m in (TransformerLM, ReformerLM)]
    assert count[0] == count[1]


def _counted_flops(model, tokens) -> tuple[int, int]:
    with FlopCounterMode(display=False) as counter:
        loss = model(tokens).square().mean()
    forward = counter.get_total_flops()
    with FlopCounterMode(display=False) as counter:
        loss.backward()
    return forward, counter.get_total_flops()


def test_counted_flops_equal_reformer_full_and_analytic():
    tokens = torch.randint(0, 40, (2, 48))
    baseline = _counted_flops(TransformerLM(CONFIG), tokens)
    reformer = _counted_flops(ReformerLM(CONFIG), tokens)
    assert baseline == reformer
    # Both materialise the causal attention's masked half too, which model FLOPs leave
    # out (once in forward, three times with backward).
    masked = flops_breakdown(CONFIG, 48, batch=2)["attention"]
    assert baseline[0] == model_flops(CONFIG, 48, batch=2) + masked
    assert sum(baseline) == model_flops(CONFIG, 48, batch=2, backward=True) + 3 * masked
