"""Analytic FLOPs (reformer/flops.py) against torch's own count of the matmuls run."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from reformer.config import ReformerConfig
from reformer.flops import flops_breakdown, model_flops
from reformer.model import ReformerLM

BASE = ReformerConfig(
    vocab_size=32,
    d_model=32,
    n_heads=2,
    n_layers=2,
    d_ff=64,
    n_hashes=2,
    bucket_size=8,
    max_seq_len=128,
)


def _counted(config: ReformerConfig, seq_len: int, batch: int) -> tuple[int, int]:
    """FLOPs torch's counter sees: the torch path's ops (the fused CPU kernel's matmuls
    run in C, where the counter cannot see them)."""
    torch.manual_seed(0)
    model = ReformerLM(config.replace(backend="torch"))
    tokens = torch.randint(0, config.vocab_size, (batch, seq_len))
    with FlopCounterMode(display=False) as counter:
        out = model(tokens)
    forward = counter.get_total_flops()
    with FlopCounterMode(display=False) as counter:
        out.square().mean().backward()
    return forward, counter.get_total_flops()


@pytest.mark.parametrize(
    "changes,seq_len",
    [
        (dict(attention="full", reversible=False), 40),
        (dict(attention="full", reversible=True, ff_chunks=3), 40),
        (dict(attention="lsh", reversible=True, ff_chunks=4), 64),
        (dict(attention="lsh", reversible=False), 60),  # padded to a multiple of bucket_size
        (dict(attention="lsh", reversible=True, n_hashes=3, n_buckets=(4, 6)), 48),  # factorised
        (dict(attention="lsh", reversible=False, bucket_size=64, n_hashes=1), 50),  # one chunk
    ],
)
def test_analytic_equals_counted(changes, seq_len):
    config = BASE.replace(**changes)
    forward, backward = _counted(config, seq_len, batch=2)
    # The materialised causal attention also multiplies the masked half of the square,
    # which model FLOPs leave out: once per attention forward, twice more in backward, and
    # once more when a reversible backward recomputes the forward.
    masked = 0
    if config.attention == "full" and config.causal:
        masked = flops_breakdown(config, seq_len, batch=2)["attention"]
    assert forward == model_flops(config, seq_len, batch=2) + masked
    assert (
        forward + backward
        == model_flops(config, seq_len, batch=2, backward=True, recompute=True)
        + (4 if config.reversible else 3) * masked
    )


def test_causal_exact_attention_counts_half_the_square():
    causal = BASE.replace(attention="sdpa", causal=True)
    both_ways = BASE.replace(attention="sdpa", causal=False)
    full, half = (flops_breakdown(c, 256)["attention"] for c in (both_ways, causal))
    assert full == BASE.n_layers * 2 * 2 * BASE.n_heads * 256 * 256 * BASE.d_head
    assert half * 2 == full


def test_model_flops_do_not_depend_on_memory_tricks():
    plain = BASE.replace(attention="lsh", reversible=False, ff_chunks=1)
    frugal = plain.replace(reversible=True, ff_chunks=8)
    for backward in (False, True):
        assert model_flops(plain, 256, 2, backward) == model_flops(frugal, 256, 2, backward)
    assert model_flops(frugal, 256, 2, True, recompute=True) > model_flops(
        plain, 256, 2, True, recompute=True
    )


def test_breakdown_sums_to_total_and_backward_is_twice_forward():
    config = BASE.replace(attention="lsh")
    forward = flops_breakdown(config, 256, 2)
    total = flops_breakdown(config, 256, 2, backward=True)
    assert sum(forward.values()) == model_flops(config, 256, 2)
    for name in forward:
        expected = forward[name] if name == "hashing" else 3 * forward[name]
        assert total[name] == expected, name


def _attention_slope(attention: str) -> float:
    config = BASE.replace(attention=attention, bucket_size=64)
    lengths = (4096, 65536)
    core = [flops_breakdown(config, n)["attention"] for n in lengths]
    return math.log(core[1] / core[0]) / math.log(lengths[1] / lengths[0])


def test_attention_scales_quadratically_for_full_and_linearly_for_lsh():
    assert _attention_slope("full") == pytest.approx(2.0)
    assert _attention_slope("lsh") == pytest.approx(1.0)


def test_bad_arguments():
    with pytest.raises(ValueError, match="seq_len"):
        model_flops(BASE, 0)
    with pytest.raises(ValueError, match="backward=True"):
        flops_breakdown(BASE, 16, recompute=True)
