"""The append-only store: one grid per run file, a full disk, junk lines."""

from __future__ import annotations

import errno
import io
import json
import os

import pytest

import suites.rows.store as store_module
from suites.harness import exits
from suites.harness.suite import GridContext
from suites.rows.store import RowNotWritten, RunFile, read_rows
from suites.run import main
from tests.suites.tiny import _marks, _point, _sweep_to, _use_suite


def test_another_grid_starts_its_own_run_file_and_each_grid_resumes_its_own(tmp_path):
    marks = tmp_path / "marks"
    small = [_point("ok_runner", "a", 8, marks)]
    wide = [_point("ok_runner", "wide", 8, marks)]
    quick = _sweep_to(small, tmp_path)
    default = _sweep_to(small, tmp_path, ctx=GridContext(device="cpu", mode="default"))
    other = _sweep_to(wide, tmp_path)
    assert len({quick.path, default.path, other.path}) == 3
    for run_file in (quick, default, other):
        rows, _ = read_rows(run_file.path)
        assert len(rows) == 1 and len({row["grid_id"] for row in rows}) == 1
    assert quick.rows[0]["grid_id"] != other.rows[0]["grid_id"]
    again = _sweep_to(small, tmp_path)
    assert again.path == quick.path and _marks(marks) == ["a:8", "a:8", "wide:8"]


def test_lengths_pick_points_of_the_same_grid_and_file(tmp_path):
    points = [_point("ok_runner", "a", 8), _point("ok_runner", "a", 16)]
    first = _sweep_to(points, tmp_path, lengths=[8])
    second = _sweep_to(points, tmp_path, lengths=[16])
    assert second.path == first.path and len(read_rows(first.path)[0]) == 2


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


def test_arrays_binary_junk_and_numbers_in_a_results_file_are_skipped(tmp_path):
    points = [_point("ok_runner", "a", 8), _point("ok_runner", "a", 16)]
    first = _sweep_to(points, tmp_path, lengths=[8])
    with open(first.path, "ab") as handle:
        handle.write(b"[1, 2, 3]\n42\n\x00\xff\xfe binary\n")
        handle.write(b'{"seq_len": 8, "torn')
    log = io.StringIO()
    resumed = _sweep_to(points, tmp_path, log=log)
    assert resumed.path == first.path
    assert log.getvalue().count("malformed line skipped") == 4
    lines = first.path.read_bytes().splitlines()
    assert lines[-2] == b'{"seq_len": 8, "torn' and json.loads(lines[-1])["seq_len"] == 16
    rows, problems = read_rows(first.path)
    assert [row["seq_len"] for row in rows] == [8, 16] and len(problems) == 4
