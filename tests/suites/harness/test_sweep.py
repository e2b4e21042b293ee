"""The sweep on tiny grids (tests.suites.tiny): rows, statuses, oom -> skipped, resume,
malformed lines."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import suites.run as run_module
from suites.harness.environment import REPO_ROOT
from suites.harness.options import SweepOptions
from suites.harness.points import Point
from suites.harness.spec import model_fields
from suites.harness.suite import GridContext
from suites.harness.sweep import run_sweep
from suites.registry import load_suites
from suites.rows.schema import EXTRA_FIELDS, ROW_FIELDS, STATUSES
from suites.rows.store import RunFile, read_rows
from suites.run import main
from tests.suites.tiny import CTX, RUNNERS, _marks, _point, _suite, _sweep, _sweep_to

# -- tests ---------------------------------------------------------------------------------


def test_every_row_has_every_schema_field_from_a_real_measurement(tmp_path):
    from reformer.config import PRESETS
    from suites.grids._common import layer_point

    config = PRESETS["default"].replace(attention="sdpa", d_model=16, n_heads=2)
    point = layer_point(CTX, config, seq_len=64)
    run_file = _sweep([point, _point("raising_runner", "bad", 8)], tmp_path, threads=1)
    rows, problems = read_rows(run_file.path)
    assert not problems and len(rows) == 2
    for row in rows:
        assert set(ROW_FIELDS + EXTRA_FIELDS) <= set(row), set(ROW_FIELDS) - set(row)
        assert row["status"] in STATUSES and row["suite"] == "tiny"
    ok = next(r for r in rows if r["model"] == "attn-sdpa")
    assert ok["status"] == "ok", ok["error"]
    measured = (
        "t_median_ms",
        "t_iqr_ms",
        "n_samples",
        "peak_mib",
        "saved_mib",
        "memory_method",
        "tokens_per_s",
        "flops",
        "tflops_per_s",
        "num_threads",
        "torch",
        "cpu_model",
    )
    assert all(ok[field] is not None for field in measured), ok
    assert ok["saved_mib"] > 0 and ok["flops"] > 0 and ok["tokens_per_s"] > 0
    assert ok["num_threads"] == 1  # --threads reaches the child and is recorded
    # One GEMM per run (quick grids: 1024²) gives the peak MFU divides by; a point with
    # another runner gets none.
    assert ok["peak_source"] == "measured_gemm_1024" and ok["peak_tflops"] > 0
    assert ok["mfu"] == pytest.approx(ok["tflops_per_s"] / ok["peak_tflops"])
    assert ok["backend"] is None  # exact attention: no LSH backend
    bad = next(r for r in rows if r["model"] == "bad")
    assert bad["peak_tflops"] is None and bad["mfu"] is None


def test_a_point_that_raises_is_an_error_row_and_the_sweep_continues(tmp_path):
    points = [
        _point("raising_runner", "a", 8),
        _point("ok_runner", "b", 8),
        _point("raising_runner", "a", 16),
    ]
    rows = _sweep(points, tmp_path).rows
    assert [r["status"] for r in rows] == ["error", "ok", "error"]
    assert "ValueError: bad point seq_len=8" in rows[0]["error"]
    assert rows[2]["error"].endswith("seq_len=16")  # errors do not skip longer lengths


def test_over_the_memory_cap_is_oom_and_longer_lengths_of_the_family_skip(tmp_path):
    marks = tmp_path / "marks"
    points = [_point("alloc_runner", "big", length, marks) for length in (32, 64, 1024, 2048)]
    points.append(_point("alloc_runner", "other", 16, marks))
    rows = {(r["model"], r["seq_len"]): r for r in _sweep(points, tmp_path, max_memory_gb=0.5).rows}
    assert rows[("big", 32)]["status"] == "ok" and rows[("big", 64)]["status"] == "ok"
    assert rows[("big", 1024)]["status"] == "oom"
    assert "allocate" in rows[("big", 1024)]["error"]
    assert rows[("big", 2048)]["status"] == "skipped"
    assert "oom (seq_len=1024)" in rows[("big", 2048)]["error"]
    assert rows[("other", 16)]["status"] == "ok"
    assert rows[("big", 1024)]["memory_cap"] == "rlimit_as"
    assert rows[("big", 32)]["max_memory_gb"] == 0.5
    assert "big:2048" not in _marks(marks)  # never started


def test_killed_by_the_os_is_oom_and_timeout_is_timeout(tmp_path):
    points = [
        _point("sigkill_runner", "killed", 8),
        _point("sleeping_runner", "slow", 8, timeout_s=1.0),
        _point("sleeping_runner", "slow", 16, timeout_s=1.0),
    ]
    rows = _sweep(points, tmp_path).rows
    assert [r["status"] for r in rows] == ["oom", "timeout", "skipped"]
    assert "SIGKILL" in rows[0]["error"]
    assert rows[1]["wall_s"] < 30


def test_a_runner_past_its_own_limit_is_timeout_and_longer_lengths_skip(tmp_path):
    points = [
        _point("ok_runner", "limited", 8),
        _point("too_slow_runner", "limited", 16),
        _point("ok_runner", "limited", 32),
    ]
    rows = _sweep(points, tmp_path).rows
    assert [r["status"] for r in rows] == ["ok", "timeout", "skipped"]
    assert "TooSlow" in rows[1]["error"] and "limit of 2 s" in rows[1]["error"]


def test_resume_skips_ok_points_and_fresh_starts_a_new_file(tmp_path):
    marks = tmp_path / "marks"
    points = [_point("ok_runner", "a", 8, marks), _point("raising_runner", "b", 8, marks)]
    first = _sweep(points, tmp_path)
    assert sorted(_marks(marks)) == ["a:8", "b:8"]
    resumed = _sweep(points, tmp_path)
    assert resumed.path == first.path
    assert sorted(_marks(marks)) == ["a:8", "b:8", "b:8"]  # only the failed point re-ran
    rows, _ = read_rows(first.path)
    assert [r["status"] for r in rows] == ["ok", "error", "error"]
    fresh = _sweep(points, tmp_path, fresh=True)
    assert fresh.path != first.path and first.path.exists()
    assert len(read_rows(first.path)[0]) == 3 and len(read_rows(fresh.path)[0]) == 2


def test_a_file_from_another_machine_kind_is_never_resumed(tmp_path, monkeypatch):
    # A results folder travels through git: the newest file of a grid may come from another
    # CPU. Its ok points say nothing about this one, so this run starts its own file.
    import suites.harness.sweep as sweep_module

    marks = tmp_path / "marks"
    points = [_point("ok_runner", "a", 8, marks)]
    first = _sweep(points, tmp_path)
    real = sweep_module.environment
    monkeypatch.setattr(
        sweep_module, "environment", lambda device: {**real(device), "cpu_model": "Other CPU"}
    )
    other = _sweep(points, tmp_path)
    assert other.path != first.path
    assert sorted(_marks(marks)) == ["a:8", "a:8"]  # measured again, on "Other CPU"
    assert {row["cpu_model"] for row in read_rows(other.path)[0]} == {"Other CPU"}


def test_a_malformed_line_is_reported_skipped_and_kept(tmp_path):
    marks = tmp_path / "marks"
    points = [_point("ok_runner", "a", 8, marks), _point("ok_runner", "a", 16, marks)]
    run_file = _sweep(points, tmp_path, lengths=[8])  # the same grid, its first point
    with open(run_file.path, "a") as handle:
        handle.write("this is not json\n")
        handle.write('{"status": "ok", "torn')  # a run killed mid-write: no newline
    log = io.StringIO()
    resumed = run_sweep(
        _suite(points), CTX, SweepOptions(out_dir=tmp_path, progress=False), log=log
    )
    assert "malformed line" in log.getvalue() and f"{run_file.path}:2" in log.getvalue()
    assert _marks(marks) == ["a:8", "a:16"]  # the ok row before the bad lines still counts
    lines = resumed.path.read_text().splitlines()
    assert lines[1] == "this is not json" and lines[2] == '{"status": "ok", "torn'
    assert json.loads(lines[3])["seq_len"] == 16
    rows, problems = read_rows(resumed.path)
    assert len(rows) == 2 and len(problems) == 2


def test_cli_lists_suites_and_refuses_cuda_without_it(capsys, monkeypatch):
    assert main(["--list", "--quick"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in ("memory", "time", "peers", "scale"))
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(SystemExit) as exc:
        main(["memory", "--device", "cuda"])
    assert exc.value.code == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_cli_runs_a_suite_and_prints_a_summary(tmp_path, capsys, monkeypatch):

    marks = tmp_path / "marks"
    suite = _suite([_point("ok_runner", "a", 8, marks)], name="tiny")
    monkeypatch.setattr(run_module, "load_suites", lambda: {"tiny": suite})
    monkeypatch.setattr(run_module, "get_suite", lambda name: suite)
    assert main(["tiny", "--out", str(tmp_path), "--no-progress", "--max-memory-gb", "1"]) == 0
    out = capsys.readouterr().out
    assert "every measured number:" in out and "1 ok" in out and "1 GiB per point" in out
    assert RunFile.open(tmp_path, "tiny", "cpu").ok_keys()


@pytest.mark.parametrize("name", sorted(load_suites()))
@pytest.mark.parametrize("mode", ["quick", "default", "paper"])
@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_every_registered_grid_is_well_formed(name, mode, device):
    suite = load_suites()[name]
    points = suite.grid(GridContext(device=device, mode=mode))
    assert points, f"{name} has no points in {mode}"
    keys = set()
    for point in points:
        if point.runner == "suites.harness.measure:measure_step":
            assert point.config is not None and point.workload is not None
            assert point.params == model_fields(point.params["model"], point.config, point.workload)
            assert point.config.max_seq_len == point.workload.seq_len == point.seq_len
        missing = {"model", "phase", "seq_len", "device", "attention", "seed"} - set(point.params)
        assert not missing, f"{name} point lacks {missing}"
        keys.add(point.key(name, "cpu-x"))
    assert len(keys) == len(points), f"{name} has duplicate points"


def test_more_threads_than_cpus_warn_and_are_recorded(tmp_path):
    cpus = len(os.sched_getaffinity(0))
    log = io.StringIO()
    run_file = _sweep_to([_point("ok_runner", "a", 8)], tmp_path, log=log, threads=cpus + 1)
    assert f"warning: --threads {cpus + 1} on {cpus} CPUs" in log.getvalue()
    assert run_file.rows[0]["threads_oversubscribed"] is True
    fitting = _sweep_to([_point("ok_runner", "a", 8)], tmp_path / "fits", log=log, threads=1)
    assert fitting.rows[0]["threads_oversubscribed"] is False


def test_a_sweep_whose_parent_alone_is_killed_resumes_without_duplicates(tmp_path):
    """SIGKILL of the sweep's own process (its point's child left running): the lock goes
    with it, the resumed sweep measures the interrupted point once, no row is doubled."""
    marks, flag = tmp_path / "marks", tmp_path / "hold"
    flag.write_text("")
    params = {"model": "a", "phase": "fwd", "batch": 1, "device": "cpu", "marks": str(marks)}
    script = textwrap.dedent(
        f"""
        import io
        from pathlib import Path
        from suites.harness.points import Point
        from suites.harness.suite import GridContext
        from suites.harness.sweep import run_sweep
        from tests.suites.tiny import _suite
        params = {params!r}
        points = [
            Point(params={{**params, "seq_len": 8}}, runner="tests.suites.point_runners:ok",
                  timeout_s=120),
            Point(params={{**params, "seq_len": 16, "flag": {str(flag)!r}}},
                  runner="tests.suites.point_runners:sleep_while_flagged", timeout_s=120),
        ]
        from suites.harness.options import SweepOptions
        run_sweep(_suite(points), GridContext(device="cpu", mode="quick"),
                  SweepOptions(out_dir=Path({str(tmp_path)!r}), progress=False), log=io.StringIO())
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO_ROOT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while _marks(marks) != ["a:8", "a:16"] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _marks(marks) == ["a:8", "a:16"], "the second point never started"
        os.kill(proc.pid, signal.SIGKILL)  # the parent alone
        proc.wait(timeout=30)
        flag.unlink()
        points = [
            Point(params={**params, "seq_len": 8}, runner=f"{RUNNERS}:ok", timeout_s=120),
            Point(
                params={**params, "seq_len": 16, "flag": str(flag)},
                runner=f"{RUNNERS}:sleep_while_flagged",
                timeout_s=120,
            ),
        ]
        resumed = _sweep_to(points, tmp_path)  # not refused: the lock died with its holder
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the orphaned child, if still there
    rows, _ = read_rows(resumed.path)
    assert [(row["seq_len"], row["status"]) for row in rows] == [(8, "ok"), (16, "ok")]
    assert _marks(marks) == ["a:8", "a:16", "a:16"]
