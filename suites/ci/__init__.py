"""CI performance tracking: deterministic gates, ratio gates, history.

Run ``python -m suites.ci`` (see suites/ci/__main__.py). Modules: gates (the tracked
figures, their limits and readable failures), deterministic (saved bytes and FLOP counts),
timing (interleaved ratio of medians), bench (the suites/ci/benchmarks child run), baseline
(results/ci/baseline.json) and history (results/ci/history.jsonl).
"""
