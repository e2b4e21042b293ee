"""suites/gpu_check.sh: it parses, refuses bad calls, and its dry run (CPU, --quick grids,
no installs) goes through every stage and writes rows, a report and a summary."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from suites.env import REPO_ROOT

SCRIPT = REPO_ROOT / "suites" / "gpu_check.sh"
pytestmark = pytest.mark.skipif(
    shutil.which("bash") is None or shutil.which("timeout") is None, reason="needs bash and timeout"
)


def _run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        check=False,
    )


def test_the_script_parses():
    assert subprocess.run(["bash", "-n", str(SCRIPT)], check=False).returncode == 0


@pytest.mark.parametrize("args", [(), ("--nope", "out"), ("a", "b")])
def test_bad_calls_print_the_usage_and_exit_2(args):
    done = _run(*args)
    assert done.returncode == 2 and "usage:" in done.stderr


@pytest.mark.slow
def test_a_dry_run_goes_through_every_stage(tmp_path):
    out = tmp_path / "out"
    budgets = {
        f"GPU_CHECK_{stage}_S": "400"
        for stage in ("INSTALL", "GPU_TESTS", "KERNEL_BENCH", "SCALE", "REPORT")
    }
    done = _run(
        "--dry-run",
        str(out),
        timeout=1800,
        env={
            "PYTHON": sys.executable,
            "GPU_CHECK_SUITES": "scale",
            "GPU_CHECK_BUDGET_S": "1700",
            **budgets,
        },
    )
    summary = (out / "summary.txt").read_text()
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    for stage in ("install", "gpu-tests", "kernel-bench", "scale", "report"):
        assert any(line.startswith(stage) and " ok " in line for line in summary.splitlines()), (
            summary
        )
    rows = [
        json.loads(line)
        for path in (out / "results").glob("scale_cpu_*.jsonl")
        for line in path.read_text().splitlines()
    ]
    assert len(rows) == 3 and all(row["status"] == "ok" for row in rows)
    assert all(row["peak_source"] == "measured_gemm_1024" for row in rows)
    assert list((out / "report").glob("*/report.md"))
    bench = json.loads((out / "kernel_bench.json").read_text())
    assert isinstance(bench["times_ms"]["torch"]["256"], float)
    assert (out / "logs" / "gpu_tests.xml").exists()
