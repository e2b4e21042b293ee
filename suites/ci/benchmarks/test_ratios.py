"""The three ratio figures the CI gates track (issue 7); see conftest.py beside it.

Each pair runs through the harness's own step builder (suites.steps.build_step), so a
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
from suites.steps import build_step

LAYER = {"d_model": 64, "n_heads": 1, "n_hashes": 4, "bucket_size": 64, "causal": True,
         "batch": 1, "device": "cpu", "dtype": "float32", "seed": 0, "pass": "fwd_bwd"}
LM = {**LAYER, "vocab_size": 256, "n_layers": 4, "d_ff": 256, "attention": "lsh",
      "pass": "train_step"}


def _step(params: dict):
    step = build_step(params)
    step()  # one untimed call: fails fast on a broken step, before any timing
    for tensor in step.grad_tensors:
        if tensor.grad is not None:
            assert torch.isfinite(tensor.grad).all(), f"{params['model']}: non-finite grads"
    return step


def test_lsh4_vs_full_8k(ratio_benchmark):
    """LSH-4 attention layer fwd+bwd at L=8192 / full (materialised) attention, same L."""
    lsh = {**LAYER, "model": "attn-lsh", "seq_len": 8192}
    full = {**LAYER, "model": "attn-full", "seq_len": 8192}
    info = ratio_benchmark("lsh4_vs_full_8k", ("attn-lsh", _step(lsh)),
                           ("attn-full", _step(full)), rounds=15, warmup=2,
                           params={"lsh": lsh, "full": full})
    assert math.isfinite(info["ratio"]) and info["ratio"] > 0


@pytest.mark.skipif(not peer_available("peer-reformer-pytorch"),
                    reason="reformer-pytorch is not installed (pip install '.[peers]')")
def test_ours_vs_reformer_pytorch(ratio_benchmark):
    """Our LSHSelfAttention fwd+bwd / reformer-pytorch's, same shape, L=8192."""
    ours = {**LAYER, "model": "attn-lsh", "seq_len": 8192}
    theirs = {**LAYER, "model": "peer-reformer-pytorch", "seq_len": 8192}
    torch.manual_seed(0)  # reformer-pytorch draws its rotations from the global RNG
    info = ratio_benchmark("ours_vs_reformer_pytorch", ("attn-lsh", _step(ours)),
                           ("reformer-pytorch", _step(theirs)), rounds=20, warmup=2,
                           params={"ours": ours, "theirs": theirs})
    assert math.isfinite(info["ratio"]) and info["ratio"] > 0


def test_reversible_vs_plain_step(ratio_benchmark):
    """Reversible ReformerLM training step / the same model with plain residuals.

    The reversible backward recomputes every layer's forward, so the paper's expectation is
    about 1.3-2x.
    """
    rev = {**LM, "model": "reformer-lsh-rev", "reversible": True, "seq_len": 2048}
    plain = {**LM, "model": "reformer-lsh", "reversible": False, "seq_len": 2048}
    info = ratio_benchmark("reversible_vs_plain_step", ("reversible", _step(rev)),
                           ("plain", _step(plain)), rounds=20, warmup=2,
                           params={"reversible": rev, "plain": plain})
    assert math.isfinite(info["ratio"]) and info["ratio"] > 0
