"""One module per suite; each declares ``SUITE = Suite(...)`` (suites.harness.points), which
suites.registry finds; per-suite helpers (crossover.py, scale_step.py) live beside them.
"""
