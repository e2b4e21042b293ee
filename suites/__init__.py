"""Benchmark and ablation suites: ``python -m suites.run SUITE``."""
