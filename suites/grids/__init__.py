"""One module per suite; each declares ``SUITE = Suite(...)`` (suites.harness.points), which
suites.registry finds; per-suite helpers (scale_step.py) live beside them, and the row math a
summary shares with the report (crossovers) in suites.rows.
"""
