"""One-way imports: reports -> suites.rows; suites -> baselines -> reformer.

suites/rows is the floor of the benchmark side, and reports/ stands on it alone. The model
side runs the other way: reformer/ imports nothing else of the project's, and baselines/
only reformer/, so the model is importable without the suites or the reports.

suites/rows/ imports nothing else of the project's (not the rest of suites/, not reformer/,
not baselines/), and reports/ imports of the project only itself and suites.rows. So
reading rows needs neither the model nor the harness, and what a report draws changes only
with the rows and the code of those two packages. Every import counts: inside a function,
under TYPE_CHECKING, relative, or through importlib with a literal name; a dynamic import
whose name the source does not spell out is refused, since it could not be checked.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The project's own top-level packages: those known today, and any added beside them.
PROJECT = frozenset({"reformer", "baselines", "suites", "reports", "tests"}) | {
    path.parent.name for path in REPO.glob("*/__init__.py")
}
FLOOR = "suites.rows"
# Never imported by either package: reading rows must not need the model's runtime.
FORBIDDEN = PROJECT | {"torch"}
DYNAMIC = "<dynamic import>"


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _is_dynamic_import(func: ast.expr) -> bool:
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    return name in ("import_module", "__import__")


def imported(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, dotted name) of every import in ``source``, the source of ``module``; relative
    imports resolved, ``from a import b`` read as ``a.b``."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.Call) and _is_dynamic_import(node.func):
            first = node.args[0] if node.args else None
            name = DYNAMIC
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                name = first.value
            found.append((node.lineno, name))
    return sorted(found)


def offending(
    source: str, module: str, allowed: tuple[str, ...], is_package: bool = False
) -> list[tuple[int, str]]:
    """The imports of ``source`` that break the rule: a project package (or torch) outside
    ``allowed``, or a dynamic import of a name the source does not spell."""
    return [
        (line, name)
        for line, name in imported(source, module, is_package)
        if name == DYNAMIC
        or (name.split(".")[0] in FORBIDDEN and not any(_within(name, a) for a in allowed))
    ]


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@pytest.mark.parametrize(
    ("folder", "allowed"),
    [("reports", ("reports", FLOOR)), ("suites/rows", (FLOOR,))],
    ids=["reports-stand-on-the-rows-floor-alone", "the-rows-floor-imports-nothing-above"],
)
def test_imports_go_one_way_down_to_the_rows_floor(folder: str, allowed: tuple[str, ...]):
    paths = sorted((REPO / folder).rglob("*.py"))
    assert paths, f"no modules under {folder}/"
    broken = [
        f"{path.relative_to(REPO)}:{line} imports {name}"
        for path in paths
        for line, name in offending(
            path.read_text(encoding="utf-8"),
            _module_name(path),
            allowed,
            is_package=path.name == "__init__.py",
        )
    ]
    assert not broken, f"{folder}/ may import of the project only {allowed}:\n" + "\n".join(broken)


@pytest.mark.parametrize(
    ("folder", "allowed"),
    [("reformer", ("reformer",)), ("baselines", ("baselines", "reformer"))],
    ids=["the-model-imports-nothing-above-it", "baselines-stand-on-the-model-alone"],
)
def test_the_model_side_imports_nothing_above_it(folder: str, allowed: tuple[str, ...]):
    broken = [
        f"{path.relative_to(REPO)}:{line} imports {name}"
        for path in sorted((REPO / folder).rglob("*.py"))
        for line, name in imported(
            path.read_text(encoding="utf-8"), _module_name(path), path.name == "__init__.py"
        )
        if name.split(".")[0] in PROJECT and not any(_within(name, a) for a in allowed)
    ]
    assert not broken, f"{folder}/ may import of the project only {allowed}:\n" + "\n".join(broken)


CHECKED = """\
import importlib
from typing import TYPE_CHECKING

import pandas as pd

from suites.rows import names
from suites.rows.schema import PHASES
from . import sibling

if TYPE_CHECKING:
    from reformer.config import ReformerConfig


def draw(which):
    from suites.harness.busy import RULE
    import baselines.transformer
    importlib.import_module("suites.registry")
    return importlib.import_module(which)


from suites import registry
from .. import harness
import torch
"""


def test_the_check_sees_imports_in_functions_type_checking_relative_and_dynamic():
    as_rows = offending(CHECKED, "suites.rows.example", (FLOOR,))
    assert as_rows == [
        (11, "reformer.config.ReformerConfig"),
        (15, "suites.harness.busy.RULE"),
        (16, "baselines.transformer"),
        (17, "suites.registry"),
        (18, DYNAMIC),
        (21, "suites.registry"),
        (22, "suites.harness"),
        (23, "torch"),
    ]
    # In reports/, the relative imports resolve to reports' own modules; the rest is refused.
    as_report = offending(CHECKED, "reports.sections.example", ("reports", FLOOR))
    assert as_report == [found for found in as_rows if found[0] != 22]
    assert (22, "reports.harness") in imported(CHECKED, "reports.sections.example")
    assert offending("from . import names\n", "suites.rows", (FLOOR,), is_package=True) == []
