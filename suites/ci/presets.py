"""The models the CI ratio benchmarks run (suites/ci/benchmarks/test_ratios.py).

Row fields derive from these configs, and the gates compare against a baseline measured
with them (results/ci/baseline.json): change a field and the baseline no longer applies.
"""

from __future__ import annotations

from reformer.config import ReformerConfig

CI_PRESETS: dict[str, ReformerConfig] = {
    # The CI ratio benchmarks' models: one head of width 64 (chunk 64, LSH-4), and an LM of
    # 4 such layers with d_ff 256.
    "ci-layer": ReformerConfig(d_model=64, n_heads=1, n_layers=1),
    "ci-lm": ReformerConfig(d_model=64, n_heads=1, n_layers=4, d_ff=256),
    # The suites' attention layer (d_model 256, 4 heads of 64, chunk 64, LSH-4): the shape
    # a user with one document of 1K tokens runs, where per-call overhead weighs most.
    "ci-layer-wide": ReformerConfig(d_model=256, n_heads=4, n_layers=1),
}
