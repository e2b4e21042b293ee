"""Reading rows: malformed lines skipped, the newest row of a point, hardware names."""

from __future__ import annotations

import json
import logging

import pandas as pd

from reports.load import latest_points, load_history, load_rows, normalise, slugify
from suites.rows.names import hardware_name
from tests.reports.synthetic import (
    history_rows,
    memory_rows,
)


def test_load_skips_malformed_lines_and_rows_without_identity(tmp_path, caplog):
    nested = tmp_path / "ci"
    nested.mkdir()
    good = memory_rows()[0]
    lines = [json.dumps(good), "{torn", "[1, 2]", json.dumps({**good, "suite": None})]
    (nested / "run.jsonl").write_text("\n".join(lines) + "\n")
    (nested / "history.jsonl").write_text(json.dumps(history_rows()[0]) + "\n")
    with caplog.at_level(logging.WARNING, logger="reports"):
        rows = load_rows(tmp_path)
    assert len(rows) == 1  # read recursively; the history file is not a result file
    assert rows.loc[0, "source"] == "ci/run.jsonl"
    messages = " ".join(caplog.messages)
    assert "run.jsonl:2: malformed line skipped" in messages
    assert "run.jsonl:3: malformed line skipped (not a JSON object)" in messages
    assert "without suite" in messages
    assert len(load_history(tmp_path)) == 1


def test_newest_row_of_a_point_wins():
    first = {**memory_rows()[0], "status": "oom", "timestamp_utc": "2024-05-01T00:00:00Z"}
    later = {**first, "status": "ok", "timestamp_utc": "2024-05-02T00:00:00Z"}
    other = {**first, "seq_len": 999}
    rows = latest_points(normalise(pd.DataFrame([later, first, other])))
    assert sorted(zip(rows["seq_len"], rows["status"], strict=True)) == [(512, "ok"), (999, "oom")]
    # the harness's point_key decides identity where rows carry one
    keyed = [dict(first, point_key="k"), dict(later, point_key="k", seq_len=1)]
    assert len(latest_points(normalise(pd.DataFrame(keyed)))) == 1


def test_hardware_names():
    assert hardware_name({"device": "cuda", "gpu_name": "NVIDIA H200", "cpu_model": "x"}) == (
        "NVIDIA H200"
    )
    assert hardware_name({"device": "cpu", "gpu_name": "NVIDIA H200", "cpu_model": "Xeon"}) == (
        "Xeon"
    )
    assert slugify("Intel(R) Xeon(R) CPU @ 2.20GHz") == "intel-xeon-cpu-2-20ghz"
