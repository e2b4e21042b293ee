"""The result row: its fields and types, the names it spells, its files, and the rules the
suites' summaries and the reports both apply to rows (newest row, under load, crossovers,
the quality matrix, the paper's Table 2).

This is the floor: it imports nothing else of the project's (not the rest of suites/, not
reformer/ or baselines/), so reading rows (reports/) needs only this package and no torch.
tests/reports/test_imports.py holds both packages to that.
"""
