"""The three ratio figures the CI gates track; see conftest.py beside it.

Each pair runs through the harness's own step builder (suites.harness.steps.build_step), so a
benchmark here measures exactly what the suites measure. Shapes are small enough that all
three fit the CI time budget on a 2-core CPU: one head of width 64, batch 1, one thread
(see BENCH_THREADS in conftest.py). Numerator / denominator is "ours / what we compare
against", so a larger ratio is always worse.

Rounds were chosen from repeated runs on a loaded 2-core machine (results/ci/baseline.json
records the runs and the spread): enough that the ratio's own noise stays well inside the
gate's 25% tolerance.
"""

from __future__ import annotations

import math

import pytest
import torch

from baselines.peers import peer_available
from reformer.config import PRESETS
from suites.harness.spec import Harness, model_fields
from suites.harness.steps import build_step

LAYER, LM = PRESETS["ci-layer"], PRESETS["ci-lm"]


def _step(model: str, config, phase: str, seq_len: int) -> tuple[object, dict]:
    """(the step, after one untimed call that fails fast on a broken step; its row fields)."""
    config = config.replace(max_seq_len=seq_len)
    harness = Harness(phase=phase, seq_len=seq_len)
    step = build_step(model, config, harness)
    step()
    for tensor in step.grad_tensors:
        if tensor.grad is not None:
            assert torch.isfinite(tensor.grad).all(), f"{model}: non-finite grads"
    return step, model_fields(model, config, harness)


def test_lsh4_vs_full_8k(ratio_benchmark):
    """LSH-4 attention layer fwd+bwd at L=8192 / full (materialised) attention, same L."""
    lsh_step, lsh = _step("attn-lsh", LAYER, "fwd_bwd", 8192)
    full_step, full = _step("attn-full", LAYER.replace(attention="full"), "fwd_bwd", 8192)
    info = ratio_benchmark(
        "lsh4_vs_full_8k",
        ("attn-lsh", lsh_step),
        ("attn-full", full_step),
        rounds=15,
        warmup=2,
        params={"lsh": lsh, "full": full},
    )
    assert math.isfinite(info["ratio"]) and info["ratio"] > 0


@pytest.mark.skipif(
    not peer_available("peer-reformer-pytorch"),
    reason="reformer-pytorch is not installed (pip install '.[peers]')",
)
def test_ours_vs_reformer_pytorch(ratio_benchmark):
    """Our LSHSelfAttention fwd+bwd / reformer-pytorch's, same shape, L=8192."""
    torch.manual_seed(0)  # reformer-pytorch draws its rotations from the global RNG
    ours_step, ours = _step("attn-lsh", LAYER, "fwd_bwd", 8192)
    theirs_step, theirs = _step("peer-reformer-pytorch", LAYER, "fwd_bwd", 8192)
    info = ratio_benchmark(
        "ours_vs_reformer_pytorch",
        ("attn-lsh", ours_step),
        ("reformer-pytorch", theirs_step),
        rounds=20,
        warmup=2,
        params={"ours": ours, "theirs": theirs},
    )
    assert math.isfinite(info["ratio"]) and info["ratio"] > 0


def test_reversible_vs_plain_step(ratio_benchmark):
    """Reversible ReformerLM training step / the same model with plain residuals.

    The reversible backward recomputes every layer's forward, so the paper's expectation is
    about 1.3-2x.
    """
    rev_step, rev = _step("reformer-lsh-rev", LM, "train_step", 2048)
    plain_step, plain = _step("reformer-lsh", LM.replace(reversible=False), "train_step", 2048)
    info = ratio_benchmark(
        "reversible_vs_plain_step",
        ("reversible", rev_step),
        ("plain", plain_step),
        rounds=20,
        warmup=2,
        params={"reversible": rev, "plain": plain},
    )
    assert math.isfinite(info["ratio"]) and info["ratio"] > 0
