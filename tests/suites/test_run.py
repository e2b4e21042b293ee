"""A user's first run: nonsense values refused up front, a plain run never touches the
committed results, one sweep per folder at a time, points measured under load marked, and
a short summary. Runners come from tests.suites.tiny (run in the children)."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import suites.run as run_module
from suites.harness.lock import SweepLocked, lock_path, sweep_lock
from suites.harness.options import SweepOptions
from suites.harness.suite import GridContext
from suites.harness.summary import summary
from suites.harness.sweep import run_sweep
from suites.rows.busy import is_busy, row_is_busy
from suites.rows.store import DEFAULT_OUT, read_rows
from suites.run import main
from tests.suites.tiny import _marks, _point, _suite

CTX = GridContext(device="cpu", mode="quick")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def tiny(monkeypatch, tmp_path):
    """The CLI sees one suite, 'tiny', of one ok point that leaves a mark when measured."""
    marks = tmp_path / "marks"
    suite = _suite([_point("ok_runner", "a", 8, marks)], name="tiny")
    monkeypatch.setattr(run_module, "load_suites", lambda: {"tiny": suite})
    monkeypatch.setattr(run_module, "get_suite", lambda name: suite)
    return marks


@pytest.mark.parametrize(
    ("args", "flag", "allowed"),
    [
        (["--timeout", "0"], "--timeout", "> 0"),
        (["--timeout", "-5"], "--timeout", "> 0"),
        (["--timeout", "nan"], "--timeout", "> 0"),
        (["--threads", "0"], "--threads", ">= 1"),
        (["--threads", "-1"], "--threads", ">= 1"),
        (["--threads", "1.5"], "--threads", ">= 1"),
        (["--max-memory-gb", "-1"], "--max-memory-gb", "> 0"),
        (["--max-memory-gb", "0"], "--max-memory-gb", "> 0"),
        (["--memory-budget-gb", "0"], "--memory-budget-gb", "> 0"),
        (["--seeds", "0"], "--seeds", ">= 1"),
    ],
)
def test_nonsense_numbers_are_refused_before_any_point(tiny, capsys, args, flag, allowed):
    with pytest.raises(SystemExit) as exc:
        main(["tiny", "--no-progress", *args])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}:" in err and allowed in err
    assert _marks(tiny) == []


def test_out_that_is_a_file_or_under_a_file_is_refused(tiny, tmp_path, capsys):
    regular = tmp_path / "a_file"
    regular.write_text("x")
    for out in (regular, regular / "sub"):
        with pytest.raises(SystemExit) as exc:
            main(["tiny", "--no-progress", "--out", str(out)])
        assert exc.value.code == 2
        assert "argument --out:" in capsys.readouterr().err
    assert _marks(tiny) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_out_that_is_not_writable_is_refused(tiny, tmp_path, capsys):
    locked = tmp_path / "read_only"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        for out in (locked, locked / "new"):
            with pytest.raises(SystemExit) as exc:
                main(["tiny", "--no-progress", "--out", str(out)])
            assert exc.value.code == 2 and "not a writable folder" in capsys.readouterr().err
    finally:
        locked.chmod(0o755)
    assert _marks(tiny) == []


def test_seeds_belong_to_the_quality_suite(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["memory", "--seeds", "3", "--list"])
    assert exc.value.code == 2 and "--seeds applies only to the quality suite" in (
        capsys.readouterr().err
    )


def test_a_plain_run_never_touches_or_summarizes_committed_results(
    tiny, tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    committed = tmp_path / "results" / "tiny_cpu_20240101T000000Z.jsonl"
    committed.parent.mkdir()
    other_machine = {
        "suite": "tiny",
        "model": "a",
        "status": "ok",
        "point_key": "elsewhere",
        "seq_len": 8,
        "peak_mib": 786.0,
    }
    committed.write_text(json.dumps(other_machine) + "\n")
    before = committed.read_bytes()
    assert main(["tiny", "--no-progress"]) == 0
    assert committed.read_bytes() == before
    (written,) = (tmp_path / DEFAULT_OUT).glob("tiny_cpu_*.jsonl")
    out = capsys.readouterr().out
    assert f"every measured number: {DEFAULT_OUT / written.name}" in out
    assert "points: 1 ok" in out
    assert _marks(tiny) == ["a:8"]
    # Every row records the command line that made it.
    (row,) = (json.loads(line) for line in written.read_text().splitlines())
    assert row["argv"] == ["python", "-m", "suites.run", "tiny", "--no-progress"]
    # Resume stays: an interrupted (or finished) user run is continued, not re-measured.
    assert main(["tiny", "--no-progress"]) == 0
    assert _marks(tiny) == ["a:8"] and len(list((tmp_path / DEFAULT_OUT).glob("*.jsonl"))) == 1


def test_summary_covers_only_this_sweeps_points(tmp_path):
    points = [_point("ok_runner", "a", 8)]
    first = run_sweep(
        _suite(points), CTX, SweepOptions(out_dir=tmp_path, progress=False), log=io.StringIO()
    )
    # A row of another point, same file and CPU model (a file from another CPU model is
    # never resumed: tests/suites/harness/test_sweep.py).
    from suites.harness.environment import cpu_model

    with open(first.path, "a") as handle:
        handle.write(
            json.dumps(
                {
                    "suite": "tiny",
                    "model": "z",
                    "status": "oom",
                    "point_key": "another-point",
                    "seq_len": 8,
                    "cpu_model": cpu_model(),
                }
            )
            + "\n"
        )
    resumed = run_sweep(
        _suite(points), CTX, SweepOptions(out_dir=tmp_path, progress=False), log=io.StringIO()
    )
    assert len(resumed.rows) == 2
    text = summary(_suite(points), CTX, resumed, None)
    assert "points: 1 ok" in text and "oom" not in text


def test_a_second_sweep_on_the_same_folder_is_refused(tmp_path, tiny, capsys):
    points = [_point("ok_runner", "a", 8, tiny)]
    with sweep_lock(tmp_path, "tiny", "cpu"), pytest.raises(SweepLocked) as exc:
        run_sweep(
            _suite(points), CTX, SweepOptions(out_dir=tmp_path, progress=False), log=io.StringIO()
        )
    assert f"pid {os.getpid()}" in str(exc.value) and "another --out" in str(exc.value)
    assert _marks(tiny) == []
    with sweep_lock(tmp_path, "tiny", "cpu"):
        assert (
            main(["tiny", "--no-progress", "--out", str(tmp_path)]) == 4
        )  # not recorded: another sweep holds the folder
    assert "another sweep of tiny on cpu" in capsys.readouterr().err
    # Released at the end of the block: the same sweep now runs, and other suites never waited.
    with sweep_lock(tmp_path, "other", "cpu"):
        run_sweep(
            _suite(points), CTX, SweepOptions(out_dir=tmp_path, progress=False), log=io.StringIO()
        )
    assert _marks(tiny) == ["a:8"]


def test_the_lock_of_a_killed_sweep_is_released(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import sys, time
            from suites.harness.lock import sweep_lock
            with sweep_lock({str(tmp_path)!r}, "tiny", "cpu"):
                print("held", flush=True)
                time.sleep(60)
        """),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=os.getcwd(),
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(SweepLocked), sweep_lock(tmp_path, "tiny", "cpu"):
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with sweep_lock(tmp_path, "tiny", "cpu"):
        assert lock_path(tmp_path, "tiny", "cpu").exists()


def test_busy_rule():
    # our own 2-thread child on an idle 2-core machine reads about 2.0-2.25: not busy
    assert is_busy(3.5, 2) and is_busy(2.6, 2) and not is_busy(2.25, 2)
    assert not is_busy(2.0, 2) and not is_busy(0.3, 2)
    assert not is_busy(None, 2) and not is_busy(5.0, None) and not is_busy(float("nan"), 2)
    assert row_is_busy({"load_avg_1m": 7.2, "n_cpus": 2})


def test_points_measured_under_load_are_marked_in_the_summary(tmp_path, monkeypatch):
    loads = iter([1.0, 9.0, 9.0, 9.0])  # the warning's reading, then one per row
    monkeypatch.setattr(os, "getloadavg", lambda: (next(loads), 0.0, 0.0))
    points = [_point("ok_runner", "a", 8), _point("ok_runner", "b", 16)]
    log = io.StringIO()
    run_file = run_sweep(
        _suite(points), CTX, SweepOptions(out_dir=tmp_path, progress=False), log=log
    )
    rows, _ = read_rows(run_file.path)
    assert [row["load_avg_1m"] for row in rows] == [9.0, 9.0]
    text = summary(_suite(points), CTX, run_file, None)
    n_cpus = rows[0]["n_cpus"]
    if is_busy(9.0, n_cpus):
        assert "measured under load (*): 2 of 2 points" in text
    else:
        assert "under load" not in text


_SWEEP_WITH_A_BROKEN_COMPILER = """
import sys
import suites.run as run_module
from suites.harness.points import Point
from tests.suites.tiny import _suite
params = {"model": "lsh", "phase": "fwd", "batch": 1, "device": "cpu"}
suite = _suite([
    Point(params={**params, "seq_len": n}, runner="tests.suites.point_runners:lsh_backend")
    for n in (8, 16, 32, 64)
])
run_module.load_suites = lambda: {"tiny": suite}
run_module.get_suite = lambda name: suite
sys.exit(run_module.main(["tiny", "--no-progress", "--out", sys.argv[1]]))
"""


def test_a_sweep_says_once_that_the_cpu_kernel_cannot_build(tmp_path):
    """Fault injection 23: with a compiler that fails, each point (its own process)
    compiled again and warned again. The sweep builds before its first point and warns
    once; the points find the failure remembered and the warning given."""
    compiler, log = tmp_path / "broken-cc", tmp_path / "compiles"
    compiler.write_text(
        f'#!/bin/sh\n[ "$1" = "--version" ] && exit 0\necho "$*" >> {log}\n'
        'echo "error: this compiler is broken" >&2\nexit 1\n'
    )
    compiler.chmod(0o755)
    env = {**os.environ, "CC": str(compiler), "REFORMER_CACHE_DIR": str(tmp_path / "kernels")}
    done = subprocess.run(
        [sys.executable, "-c", _SWEEP_WITH_A_BROKEN_COMPILER, str(tmp_path / "out")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count("fused CPU kernel cannot run here") == 1, done.stderr[-3000:]
    assert len(log.read_text().splitlines()) == 2  # -march=native, then portable: once
    rows, _ = read_rows(next((tmp_path / "out").rglob("*.jsonl")))
    assert [row["impl"] for row in rows] == ["torch"] * 4
