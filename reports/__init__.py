"""Paper-style reports built from results/: ``python -m reports.build``."""
