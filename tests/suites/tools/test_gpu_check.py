"""suites/tools/gpu_check.sh: it parses, refuses bad calls, and its dry run (CPU, --quick grids,
no installs) goes through every stage and writes rows, a report and a summary."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from suites.harness.environment import REPO_ROOT

SCRIPT = REPO_ROOT / "suites" / "tools" / "gpu_check.sh"
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


def test_the_prerequisites_are_checked_first_and_said_plainly(tmp_path):
    """What Triton's launchers need (a C compiler, Python.h), a venv with pip, torch, and
    the triton that torch was built with; a missing compiler fails the stage by name."""
    out = tmp_path / "out"
    env = {"PYTHON": sys.executable, "GPU_CHECK_STAGES": "prereqs install"}
    done = _run("--dry-run", str(out), env=env)
    log = (out / "logs" / "prereqs.log").read_text()
    for needed in ("C compiler", "Python.h", "venv", "torch", "triton installed"):
        assert needed in log, log
    assert (out / "summary.txt").exists()
    summary = (out / "summary.txt").read_text()
    assert "prereqs" in summary and "install" in summary and "warm" not in summary
    assert done.returncode in (0, 1)  # 1 only where this machine misses a prerequisite

    no_compiler = {**env, "GPU_CHECK_STAGES": "prereqs", "CC": "", "PATH": _path_without_cc()}
    done = _run("--dry-run", str(tmp_path / "bare"), env=no_compiler)
    log = (tmp_path / "bare" / "logs" / "prereqs.log").read_text()
    assert "MISSING  C compiler" in log and done.returncode == 1, log


def _path_without_cc() -> str:
    """PATH with bash and coreutils but no gcc or clang: a folder of links to the tools
    the script itself uses."""
    import tempfile

    folder = tempfile.mkdtemp()
    for tool in (
        "bash",
        "timeout",
        "date",
        "mkdir",
        "tr",
        "tail",
        "tee",
        "cat",
        "grep",
        "sed",
        "wc",
        "printf",
        "nproc",
        "uname",
        "git",
        "uptime",
        "head",
        "dirname",
        "env",
    ):
        found = shutil.which(tool)
        if found:
            os.symlink(found, os.path.join(folder, tool))
    return folder


@pytest.mark.slow
def test_a_dry_run_goes_through_every_stage(tmp_path):
    out = tmp_path / "out"
    budgets = {
        f"GPU_CHECK_{stage}_S": "400"
        for stage in ("PREREQS", "INSTALL", "WARM", "GPU_TESTS", "KERNEL_BENCH", "SCALE", "REPORT")
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
    for stage in ("prereqs", "install", "warm", "gpu-tests", "kernel-bench", "scale", "report"):
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
    # The warm stage's plan: each stage's compile count and an estimate from compile
    # times measured on this machine.
    assert "compile time measured here" in summary, summary
    for stage in ("warm", "gpu-tests", "kernel-bench", "suites"):
        assert any(line.startswith(f"| {stage} | ") for line in summary.splitlines()), summary
