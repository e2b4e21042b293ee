"""Faults a new user hits early, each failing loud and losing nothing: an inherited memory
limit, sweeps whose points error, rows of the wrong types, grids sharing a file, a full
disk, data too small to split, SIGTERM, a closed pipe, logs off a terminal, too many
threads. Runners come from tests.suites.test_harness (run in the children)."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import suites.rows.store as store_module
import suites.run as run_module
from suites.harness import exits
from suites.harness.options import SweepOptions
from suites.harness.points import Point
from suites.harness.suite import GridContext
from suites.harness.summary import summary
from suites.harness.sweep import run_sweep
from suites.rows.store import RowNotWritten, RunFile, read_rows
from suites.run import main
from tests.suites.test_harness import _marks, _point, _suite

CTX = GridContext(device="cpu", mode="quick")
ROOT = Path(__file__).resolve().parents[2]
RUNNERS = "tests.suites.point_runners"


def _use_suite(monkeypatch, points):
    suite = _suite(points, name="tiny")
    monkeypatch.setattr(run_module, "load_suites", lambda: {"tiny": suite})
    monkeypatch.setattr(run_module, "get_suite", lambda name: suite)
    return suite


def _sweep(points, out, log=None, ctx=CTX, **kwargs):
    kwargs.setdefault("progress", False)
    return run_sweep(
        _suite(points), ctx, SweepOptions(out_dir=out, **kwargs), log=log or io.StringIO()
    )


# -- an inherited hard address-space limit -------------------------------------------------


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
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300
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


# -- exit statuses -------------------------------------------------------------------------


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


# -- rows of the wrong types ---------------------------------------------------------------


def test_a_row_of_the_wrong_types_is_reported_and_skipped_by_sweep_and_report(tmp_path):
    from reports.load import load_rows

    marks = tmp_path / "marks"
    points = [_point("ok_runner", "a", 8, marks), _point("ok_runner", "a", 16, marks)]
    first = _sweep(points, tmp_path)
    good = json.loads(first.path.read_text().splitlines()[0])
    with open(first.path, "a") as handle:
        handle.write(json.dumps({**good, "point_key": "hand-made", "seq_len": "1024"}) + "\n")
    log = io.StringIO()
    resumed = _sweep(points, tmp_path, log=log)
    assert resumed.path == first.path and _marks(marks) == ["a:8", "a:16"]
    assert (
        f"{first.path}:3: row skipped (seq_len='1024' must be an int >= 0 or null)"
        in log.getvalue()
    )
    assert all(isinstance(row["seq_len"], int) for row in resumed.rows)
    rows, problems = read_rows(first.path)
    assert len(rows) == 2 and len(problems) == 1
    assert len(load_rows(tmp_path)) == 2  # the report reads through the same reader


@pytest.mark.parametrize(
    ("field", "value"),
    [("causal", "false"), ("n_layers", 2.0), ("t_median_ms", "1.0"), ("status", 3)],
)
def test_each_typed_field_refuses_another_type(tmp_path, field, value):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps({"suite": "s", "model": "m", "status": "ok", field: value}) + "\n")
    rows, problems = read_rows(path)
    assert rows == [] and f"{field}={value!r}" in problems[0]


# -- one grid per run file -----------------------------------------------------------------


def test_another_grid_starts_its_own_run_file_and_each_grid_resumes_its_own(tmp_path):
    marks = tmp_path / "marks"
    small = [_point("ok_runner", "a", 8, marks)]
    wide = [_point("ok_runner", "wide", 8, marks)]
    quick = _sweep(small, tmp_path)
    default = _sweep(small, tmp_path, ctx=GridContext(device="cpu", mode="default"))
    other = _sweep(wide, tmp_path)
    assert len({quick.path, default.path, other.path}) == 3
    for run_file in (quick, default, other):
        rows, _ = read_rows(run_file.path)
        assert len(rows) == 1 and len({row["grid_id"] for row in rows}) == 1
    assert quick.rows[0]["grid_id"] != other.rows[0]["grid_id"]
    again = _sweep(small, tmp_path)
    assert again.path == quick.path and _marks(marks) == ["a:8", "a:8", "wide:8"]


def test_lengths_pick_points_of_the_same_grid_and_file(tmp_path):
    points = [_point("ok_runner", "a", 8), _point("ok_runner", "a", 16)]
    first = _sweep(points, tmp_path, lengths=[8])
    second = _sweep(points, tmp_path, lengths=[16])
    assert second.path == first.path and len(read_rows(first.path)[0]) == 2


# -- a full disk ---------------------------------------------------------------------------


def test_a_full_disk_leaves_no_partial_line_and_names_the_file(tmp_path, monkeypatch):
    run_file = RunFile(tmp_path / "tiny_cpu_1.jsonl", [], [])
    run_file.append({"seq_len": 8, "status": "ok"})
    before = run_file.path.read_bytes()
    real_write = os.write

    def half_then_full(fd, data):
        real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store_module.os, "write", half_then_full)
    with pytest.raises(RowNotWritten) as exc:
        run_file.append({"seq_len": 16, "status": "ok"})
    assert "the disk is full" in str(exc.value) and str(run_file.path) in str(exc.value)
    assert run_file.path.read_bytes() == before and len(run_file.rows) == 1


def test_a_full_disk_ends_the_sweep_with_one_line_and_a_non_zero_status(
    tmp_path, monkeypatch, capsys
):
    _use_suite(monkeypatch, [_point("ok_runner", "a", 8)])

    def full(self, row):
        raise RowNotWritten(self.path, OSError(errno.ENOSPC, "No space left on device"))

    monkeypatch.setattr(RunFile, "append", full)
    assert main(["tiny", "--out", str(tmp_path), "--no-progress"]) == exits.NOT_RECORDED
    err = capsys.readouterr().err
    assert err.startswith("error: the disk is full") and "Traceback" not in err


# -- --data too small to split -------------------------------------------------------------


@pytest.mark.parametrize("layout", ["file", "folder"])
def test_data_too_small_to_split_is_refused_before_any_point(tmp_path, capsys, layout):
    if layout == "file":
        data = tmp_path / "tiny.txt"
        data.write_bytes(b"x" * 100)  # 10 validation bytes: less than one 32-byte window
    else:
        data = tmp_path / "corpus"
        data.mkdir()
        for index in range(3):
            (data / f"{index}.txt").write_bytes(b"y" * (1000 if index != 1 else 8))
    with pytest.raises(SystemExit) as exc:
        main(["quality", "--quick", "--data", str(data), "--out", str(tmp_path / "out")])
    assert exc.value.code == 2
    assert "too small to split" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.jsonl"))


def test_split_sizes_agree_with_the_split_itself(tmp_path):
    from suites.quality.corpus import load_corpus, split_sizes

    for index in range(12):
        (tmp_path / f"{index:02d}.txt").write_bytes(bytes(range(index * 7 % 50 + 1)))
    corpus = load_corpus(tmp_path)
    assert split_sizes(tmp_path) == (corpus.train.numel(), corpus.validation.numel())


# -- SIGTERM, a closed pipe, nothing left to measure ---------------------------------------


def test_sigterm_ends_the_sweep_as_ctrl_c_does(tmp_path):
    marks = tmp_path / "marks"
    script = textwrap.dedent(
        f"""
        import sys
        import suites.run as run_module
        from tests.suites.test_harness import _suite
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
        cwd=ROOT,
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


def test_a_reader_that_closes_the_pipe_early_gets_no_traceback():
    proc = subprocess.Popen(
        [sys.executable, "-m", "suites.run", "--list", "--quick"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()  # `| head` that has read enough
    err = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert "Traceback" not in err and "BrokenPipeError" not in err
    assert proc.returncode == 0


def test_a_resume_with_nothing_left_to_measure_says_so(tmp_path):
    points = [_point("ok_runner", "a", 8)]
    _sweep(points, tmp_path)
    log = io.StringIO()
    _sweep(points, tmp_path, log=log)
    assert "nothing left to measure: all 1 points already have an ok row" in log.getvalue()


# -- off a terminal ------------------------------------------------------------------------


def test_off_a_terminal_each_finished_point_is_one_line_and_no_bar_frames(tmp_path):
    points = [_point("ok_runner", "a", 8), _point("raising_runner", "b", 8)]
    log = io.StringIO()  # not a terminal, as stderr redirected to a file is not
    _sweep(points, tmp_path, log=log, progress=True)
    text = log.getvalue()
    assert "\r" not in text and "\x1b" not in text
    lines = [line for line in text.splitlines() if line.startswith("tiny [")]
    assert len(lines) == 2
    assert lines[0].startswith("tiny [1/2] a fwd L=8: ok in ")
    assert lines[1].startswith("tiny [2/2] b fwd L=8: error in ")


# -- oversubscribed threads ----------------------------------------------------------------


def test_more_threads_than_cpus_warn_and_are_recorded(tmp_path):
    cpus = len(os.sched_getaffinity(0))
    log = io.StringIO()
    run_file = _sweep([_point("ok_runner", "a", 8)], tmp_path, log=log, threads=cpus + 1)
    assert f"warning: --threads {cpus + 1} on {cpus} CPUs" in log.getvalue()
    assert run_file.rows[0]["threads_oversubscribed"] is True
    fitting = _sweep([_point("ok_runner", "a", 8)], tmp_path / "fits", log=log, threads=1)
    assert fitting.rows[0]["threads_oversubscribed"] is False


# -- kept as it is: each held-up behaviour has a test ---------------------------------------


def test_arrays_binary_junk_and_numbers_in_a_results_file_are_skipped(tmp_path):
    points = [_point("ok_runner", "a", 8), _point("ok_runner", "a", 16)]
    first = _sweep(points, tmp_path, lengths=[8])
    with open(first.path, "ab") as handle:
        handle.write(b"[1, 2, 3]\n42\n\x00\xff\xfe binary\n")
        handle.write(b'{"seq_len": 8, "torn')
    log = io.StringIO()
    resumed = _sweep(points, tmp_path, log=log)
    assert resumed.path == first.path
    assert log.getvalue().count("malformed line skipped") == 4
    lines = first.path.read_bytes().splitlines()
    assert lines[-2] == b'{"seq_len": 8, "torn' and json.loads(lines[-1])["seq_len"] == 16
    rows, problems = read_rows(first.path)
    assert [row["seq_len"] for row in rows] == [8, 16] and len(problems) == 4


def test_out_under_proc_is_refused(monkeypatch, capsys):
    _use_suite(monkeypatch, [_point("ok_runner", "a", 8)])
    with pytest.raises(SystemExit) as exc:
        main(["tiny", "--no-progress", "--out", "/proc/reformer-bench-results"])
    assert exc.value.code == 2 and "argument --out:" in capsys.readouterr().err


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
        from tests.suites.test_harness import _suite
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
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, start_new_session=True)
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
        resumed = _sweep(points, tmp_path)  # not refused: the lock died with its holder
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the orphaned child, if still there
    rows, _ = read_rows(resumed.path)
    assert [(row["seq_len"], row["status"]) for row in rows] == [(8, "ok"), (16, "ok")]
    assert _marks(marks) == ["a:8", "a:16", "a:16"]
