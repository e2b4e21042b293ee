"""``python -m suites.record``: bring the committed record current on this machine kind.

plan (which suites, in which order, with which flags), state (each suite's newest committed
run here and whether it is current), quiet (waiting for an idle machine) and the CLI in
__main__.
"""
