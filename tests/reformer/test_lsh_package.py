"""The shape of reformer/lsh/: one folder per backend, and what backends share is public.

Each backend (``torch_path``, ``triton``, ``cpu``) may use its own private (``_name``)
helpers; anything a second module needs lives under a public name, most of it in
``reformer/lsh/layout.py``. Read with ``ast`` from the source, so nothing is imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "reformer"
LSH = PACKAGE / "lsh"
BACKENDS = ("torch_path", "triton", "cpu")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _backend(module: str) -> str | None:
    """The backend folder a module belongs to, or None (shared modules, the rest of the
    library)."""
    parts = module.split(".")
    if parts[:2] == ["reformer", "lsh"] and len(parts) > 2 and parts[2] in BACKENDS:
        return parts[2]
    return None


def _is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _absolute(importer: str, is_package: bool, level: int, module: str | None) -> str:
    if not level:
        return module or ""
    base = importer.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def private_uses(source: str, importer: str, is_package: bool = False) -> list[str]:
    """``importer``'s uses of a private name of a reformer.lsh module outside its own
    backend: ``from m import _x``, and ``alias._x`` where alias is such a module."""
    found: list[str] = []
    own = _backend(importer)
    aliases: dict[str, str] = {}

    def foreign(module: str) -> bool:
        return module.startswith("reformer.lsh") and (own is None or _backend(module) != own)

    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = _absolute(importer, is_package, node.level, node.module)
            for alias in node.names:
                target = f"{module}.{alias.name}"
                if _is_module(target):
                    aliases[alias.asname or alias.name] = target
                elif alias.name.startswith("_") and foreign(module):
                    found.append(f"{importer}:{node.lineno} imports {module}.{alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    aliases[alias.asname] = alias.name
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and foreign(aliases[node.value.id])
        ):
            module = aliases[node.value.id]
            found.append(f"{importer}:{node.lineno} uses {module}.{node.attr}")
    return found


def _library():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path, _module_name(path), path.name == "__init__.py"


def test_no_module_uses_another_backends_private_names():
    found = []
    for path, module, is_package in _library():
        found += private_uses(path.read_text(), module, is_package)
    assert not found, "\n".join(found)


def test_the_check_sees_a_private_import_and_a_private_attribute():
    source = (
        "from reformer.lsh.torch_path.slices import _windows\n"
        "from reformer.lsh.triton import function\n"
        "function._aligned(x)\n"
        "from reformer.lsh.cpu.function import _launch\n"
    )
    found = private_uses(source, "reformer.lsh.cpu.other")
    assert len(found) == 2, found
    assert "torch_path.slices._windows" in found[0] and "function._aligned" in found[1]
    # Within its own backend a module may use the backend's private helpers.
    assert private_uses("from .function import _launch\n", "reformer.lsh.cpu.other") == []
    assert private_uses("from reformer.lsh.layout import _x\n", "reformer.model") != []


def test_no_backend_imports_another_backend():
    found = []
    for path, module, _ in _library():
        own = _backend(module)
        if own is None:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            for name in names:
                other = _backend(name)
                if other is not None and other != own:
                    found.append(f"{module}:{node.lineno} imports {name}")
    assert not found, "\n".join(found)


def test_the_c_kernel_ships_with_the_package_that_builds_it():
    """setuptools' package-data must name the package that holds lsh_cpu.c, or an install
    from a wheel has no source to compile."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    sources = sorted(PACKAGE.rglob("*.c"))
    assert sources == [LSH / "cpu" / "lsh_cpu.c"]
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert data["package-data"] == {"reformer.lsh.cpu": ["*.c"]}
