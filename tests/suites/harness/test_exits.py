"""Exit statuses: points that error, SIGTERM handled as Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

from suites.harness import exits
from suites.harness.environment import REPO_ROOT
from suites.rows.store import read_rows
from suites.run import main
from tests.suites.tiny import _point, _use_suite


def test_a_sweep_whose_points_all_error_exits_with_its_own_status(tmp_path, monkeypatch, capsys):
    _use_suite(monkeypatch, [_point("raising_runner", "a", 8), _point("raising_runner", "a", 16)])
    assert main(["tiny", "--out", str(tmp_path), "--no-progress"]) == exits.ALL_ERRORS == 3
    out = capsys.readouterr().out
    assert "points: 2 error" in out and "first error (a fwd L=8): ValueError" in out
    assert "exit 3: every point (2) ended in error" in out


def test_a_sweep_with_some_errors_exits_1_and_without_errors_0(tmp_path, monkeypatch, capsys):
    _use_suite(monkeypatch, [_point("ok_runner", "a", 8), _point("raising_runner", "b", 8)])
    assert main(["tiny", "--out", str(tmp_path / "mixed"), "--no-progress"]) == 1
    assert "exit 1: 1 of 2 points ended in error" in capsys.readouterr().out
    _use_suite(monkeypatch, [_point("ok_runner", "a", 8), _point("sigkill_runner", "b", 8)])
    assert main(["tiny", "--out", str(tmp_path / "answers"), "--no-progress"]) == 0  # oom


def test_exit_statuses_of_statuses():
    assert exits.sweep_status(["ok", "oom", "timeout", "skipped"]) == exits.OK
    assert exits.sweep_status([]) == exits.OK
    assert exits.sweep_status(["ok", "error"]) == exits.SOME_ERRORS
    assert exits.sweep_status(["error", "error"]) == exits.ALL_ERRORS


def test_sigterm_ends_the_sweep_as_ctrl_c_does(tmp_path):
    marks = tmp_path / "marks"
    script = textwrap.dedent(
        f"""
        import sys
        import suites.run as run_module
        from tests.suites.tiny import _suite
        from suites.harness.points import Point
        point = Point(
            params={{"model": "a", "phase": "fwd", "seq_len": 8, "batch": 1, "device": "cpu",
                    "marks": {str(marks)!r}, "sleep_s": 60}},
            runner="tests.suites.point_runners:ok", timeout_s=120,
        )
        suite = _suite([point], name="tiny")
        run_module.load_suites = lambda: {{"tiny": suite}}
        run_module.get_suite = lambda name: suite
        sys.exit(run_module.main(["tiny", "--out", {str(tmp_path)!r}, "--no-progress"]))
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not marks.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert marks.exists(), "the point never started"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == exits.TERMINATED == 143
    assert "terminated (SIGTERM)" in err and "resume" in err and "Traceback" not in err
    (path,) = tmp_path.glob("tiny_cpu_*.jsonl")
    (row,) = read_rows(path)[0]
    assert row["status"] == "error" and row["error"] == "interrupted (SIGTERM)"
