"""Name-keyed registry of suites: every module in ``suites/grids/`` declares ``SUITE``.

A suite is a grid of points plus an optional summary. Adding a suite means dropping a
module into ``suites/grids/`` whose ``SUITE = Suite(...)``; nothing else changes (the
``quality`` suite registers itself this way, with its own ``runner``). Grids are sized to
the device and mode: ``quick`` (seconds, for tests and CI), ``default`` (minutes on a
2-core CPU) and ``paper`` (paper scale).
"""

from __future__ import annotations

import importlib
import pkgutil
import re

from suites.harness.suite import Suite
from suites.rows.schema import SUITE_ORDER


def load_suites() -> dict[str, Suite]:
    """Import every module of suites.grids and collect their SUITE, by name."""
    import suites.grids as grids

    found: dict[str, Suite] = {}
    for module_info in sorted(pkgutil.iter_modules(grids.__path__), key=lambda m: m.name):
        if module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{grids.__name__}.{module_info.name}")
        suite = getattr(module, "SUITE", None)
        if not isinstance(suite, Suite):
            continue
        if not re.fullmatch(r"[a-z][a-z0-9]*", suite.name):
            raise ValueError(
                f"suite name {suite.name!r} in {module.__name__} must be "
                "lowercase letters and digits (it names result files)"
            )
        if suite.name not in SUITE_ORDER:
            raise ValueError(
                f"suite {suite.name!r} in {module.__name__} is missing from "
                "suites.rows.schema.SUITE_ORDER (the order reports give suites in)"
            )
        if suite.name in found:
            raise ValueError(f"suite {suite.name!r} is declared twice ({module.__name__})")
        found[suite.name] = suite
    return found


def get_suite(name: str) -> Suite:
    available = load_suites()
    if name not in available:
        raise ValueError(f"unknown suite {name!r}; allowed: {sorted(available)} or 'all'")
    return available[name]
