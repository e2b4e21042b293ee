"""Rows of the wrong types are reported with file and line and skipped."""

from __future__ import annotations

import io
import json

import pytest

from suites.rows.store import read_rows
from tests.suites.tiny import _marks, _point, _sweep_to


def test_a_row_of_the_wrong_types_is_reported_and_skipped_by_sweep_and_report(tmp_path):
    from reports.load import load_rows

    marks = tmp_path / "marks"
    points = [_point("ok_runner", "a", 8, marks), _point("ok_runner", "a", 16, marks)]
    first = _sweep_to(points, tmp_path)
    good = json.loads(first.path.read_text().splitlines()[0])
    with open(first.path, "a") as handle:
        handle.write(json.dumps({**good, "point_key": "hand-made", "seq_len": "1024"}) + "\n")
    log = io.StringIO()
    resumed = _sweep_to(points, tmp_path, log=log)
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
