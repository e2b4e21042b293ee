"""Reading rows needs the row schema only: no report module imports torch (or the model)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Every reports module, those of its subpackages too, then every module of the row package
# they read, and the registry.
IMPORT_ALL = """
import importlib, pkgutil, sys
import reports, suites.rows
for package in (reports, suites.rows):
    for info in pkgutil.walk_packages(package.__path__, prefix=f"{package.__name__}."):
        importlib.import_module(info.name)
import suites.registry
loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith(("torch.", "reformer")))
print(",".join(loaded))
"""


def test_reports_import_no_torch() -> None:
    # A fresh interpreter: this test process has torch loaded already.
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"reports load {done.stdout.strip()}"
