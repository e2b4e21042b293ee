"""The per-point memory cap under an inherited hard address-space limit (ulimit -v)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from suites.harness.environment import REPO_ROOT
from suites.harness.summary import summary
from suites.rows.store import RunFile
from tests.suites.tiny import CTX, _suite


def test_an_inherited_hard_address_space_limit_clamps_the_cap_instead_of_failing():
    """Under `ulimit -v` a child may not raise RLIMIT_AS above the hard limit: the cap is
    clamped to it and the row says what was applied and what was asked for."""
    script = textwrap.dedent(
        """
        import json, resource
        hard = 8 * 2**30
        resource.setrlimit(resource.RLIMIT_AS, (hard, hard))
        from suites.harness.isolation import run_point
        result = run_point(
            "tests.suites.point_runners:ok", {"model": "a", "seq_len": 8}, {},
            timeout_s=120, max_memory_gb=100,
        )
        print(json.dumps(result))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["status"] == "ok", result["error"]
    assert result["max_memory_gb_requested"] == 100
    assert 0 < result["max_memory_gb"] < 8


def test_the_summary_says_when_the_cap_was_clamped(tmp_path):
    run_file = RunFile(tmp_path / "tiny.jsonl", [], [])
    run_file.rows = [
        {"point_key": "k", "status": "ok", "max_memory_gb": 4.2, "max_memory_gb_requested": 11.5}
    ]
    text = summary(_suite([]), CTX, run_file, 11.5)
    assert "memory budget applied: 4.2 GiB per point" in text and "not 11.5" in text
    assert "ulimit -v" in text
