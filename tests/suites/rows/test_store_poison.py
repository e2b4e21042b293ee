"""Rows that would poison a results folder: a newer schema, a line that is no result row,
values no measurement can have. Each is reported and read as not measured."""

from __future__ import annotations

import io
import json

import pytest

from suites.harness.options import SweepOptions
from suites.harness.sweep import run_sweep
from suites.rows.schema import SCHEMA_VERSION
from suites.rows.store import read_rows
from tests.suites.tiny import CTX, _marks, _point, _suite


def _sweep(points, out, log):
    return run_sweep(_suite(points), CTX, SweepOptions(out_dir=out, progress=False), log=log)


def test_a_row_of_a_newer_schema_counts_as_not_measured_and_is_measured_again(tmp_path):
    marks = tmp_path / "marks"
    points = [_point("ok_runner", "a", 8, marks)]
    first = _sweep(points, tmp_path, io.StringIO())
    (row,) = first.rows
    future = {**row, "schema_version": SCHEMA_VERSION + 997, "t_median_ms": None, "time": 1}
    first.path.write_text(json.dumps(future) + "\n")  # a newer tool renamed the timing
    log = io.StringIO()
    again = _sweep(points, tmp_path, log)  # no KeyError: the point is measured again
    assert f"schema {SCHEMA_VERSION + 997}" in log.getvalue()
    assert _marks(marks) == ["a:8", "a:8"]
    assert [r["status"] for r in again.rows] == ["ok"]


def test_a_line_that_is_no_result_row_does_not_restart_the_run(tmp_path):
    marks = tmp_path / "marks"
    points = [_point("ok_runner", "a", 8, marks), _point("ok_runner", "a", 16, marks)]
    first = _sweep(points, tmp_path, io.StringIO())
    with open(first.path, "a") as handle:
        handle.write("{}\n")
    log = io.StringIO()
    resumed = _sweep(points, tmp_path, log)
    assert resumed.path == first.path  # the same file, nothing measured again
    assert _marks(marks) == ["a:8", "a:16"]
    assert "without a status skipped" in log.getvalue()


def test_starting_a_new_file_instead_of_resuming_is_said(tmp_path):
    marks = tmp_path / "marks"
    _sweep([_point("ok_runner", "a", 8, marks)], tmp_path, io.StringIO())
    log = io.StringIO()
    other = _sweep([_point("ok_runner", "b", 8, marks)], tmp_path, log)  # another grid
    assert "another grid" in log.getvalue() and "measures every point" in log.getvalue()
    assert other.rows and _marks(marks) == ["a:8", "b:8"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("t_median_ms", float("nan")),
        ("t_median_ms", float("inf")),
        ("t_median_ms", -1.0),
        ("seq_len", -5),
        ("peak_mib", -3.0),
    ],
)
def test_values_no_measurement_can_have_are_skipped_with_a_note(tmp_path, field, value):
    path = tmp_path / "t_cpu_20260101T000000Z.jsonl"
    good = {"status": "ok", "point_key": "k", "seq_len": 8, "t_median_ms": 1.0, "seed": -1}
    path.write_text(json.dumps(good) + "\n" + json.dumps(good | {field: value}) + "\n")
    rows, problems = read_rows(path)
    assert rows == [good]  # a negative seed is a seed; the bad row is not read
    assert len(problems) == 1 and field in problems[0] and ":2:" in problems[0]


def test_a_results_file_that_cannot_be_appended_is_refused_before_any_point(tmp_path, monkeypatch):
    """`chattr +i` on the run file (simulated: root may write a read-only file, and not
    every filesystem takes the flag): the sweep stops with exit 4's error, measuring
    nothing, instead of a traceback after the first point."""
    import os

    from suites.rows.store import RowNotWritten

    marks = tmp_path / "marks"
    points = [_point("ok_runner", "a", 8, marks), _point("ok_runner", "a", 16, marks)]
    options = SweepOptions(out_dir=tmp_path, progress=False, lengths=(8,))
    first = run_sweep(_suite(points), CTX, options, log=io.StringIO())  # same grid, one point
    real_open = os.open

    def immutable(path, flags, *args):
        if str(path) == str(first.path) and flags & os.O_APPEND:
            raise PermissionError(1, "Operation not permitted", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", immutable)
    with pytest.raises(RowNotWritten, match="Operation not permitted"):
        _sweep(points, tmp_path, io.StringIO())
    assert _marks(marks) == ["a:8"]  # the second point was not measured and lost
