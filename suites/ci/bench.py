"""Run the ratio benchmarks (suites/ci/benchmarks) in a child pytest and read their JSON.

Each run writes its own pytest-benchmark JSON, ``results/ci/bench/<run_id>.json``, and the
ratio of every figure is read back from the benchmarks' ``extra_info`` (written by the
``ratio_benchmark`` fixture in suites/ci/benchmarks/conftest.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from suites.harness.environment import REPO_ROOT


def run_benchmarks(json_path: Path, nodes: list[str]) -> int:
    """pytest's exit code for the given benchmark nodes (paths relative to the repo)."""
    json_path.parent.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "pytest",
        *nodes,
        f"--benchmark-json={json_path}",
        "-p",
        "no:cacheprovider",
        "-rs",
    ]
    print("+", " ".join(command), flush=True)
    return subprocess.run(command, cwd=REPO_ROOT, check=False).returncode


def read_ratios(json_path: Path) -> dict[str, dict[str, Any]]:
    """figure -> the benchmark's extra_info (ratio, band, medians, rounds, ...)."""
    try:
        data = json.loads(Path(json_path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read benchmark JSON {json_path}: {exc}") from None
    ratios = {}
    for bench in data.get("benchmarks", []):
        info = bench.get("extra_info") or {}
        if "figure" in info and "ratio" in info:
            ratios[info["figure"]] = info
    return ratios
