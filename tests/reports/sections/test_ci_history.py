"""The CI history section keeps rows with a name and a value."""

from __future__ import annotations

import json

import pandas as pd

from reports.context import ReportContext
from reports.render.document import Table
from reports.render.palette import Palette
from reports.render.plotting import apply_theme
from reports.sections.ci_history import build_history, tidy_history
from tests.reports.synthetic import history_rows


def test_history_needs_a_name_and_a_value():
    history = tidy_history(pd.DataFrame(history_rows()))
    assert len(history) == 9
    assert list(history.loc[history["figure"] == "saved_bytes_slope_lsh", "status"]) == [
        "pass",
        "pass",
        "fail",
    ]
    assert tidy_history(pd.DataFrame([{"value": 1.0}])).empty


def _context(tmp_path, history: pd.DataFrame) -> ReportContext:
    apply_theme()
    return ReportContext(
        rows=pd.DataFrame({"model": []}),
        history=history,
        out_dir=tmp_path / "report",
        palette=Palette(),
        results_arg=str(tmp_path / "results"),
        build_command="python -m reports.build",
        dpi=30,
    )


def _baseline(tmp_path, machines: dict) -> None:
    folder = tmp_path / "results" / "ci"
    folder.mkdir(parents=True)
    content = {"schema_version": 2, "tolerance": 0.25, "machines": machines}
    (folder / "baseline.json").write_text(json.dumps(content))


def test_the_gates_drawn_are_todays_per_machine_kind_not_the_runs_own(tmp_path):
    """Runs on two kinds carry the baseline they were gated against then (0.4); the table
    gives each kind the gate as it now stands in baseline.json."""
    rows = [
        dict(row, cpu_model="Kind A")
        for row in history_rows()
        if row["figure"] == "lsh4_vs_full_8k"
    ]
    rows.append(dict(rows[-1], cpu_model="Kind B", timestamp_utc="2024-05-04T00:00:00Z"))
    rows += [dict(row, cpu_model="Kind A") for row in history_rows() if row["kind"] != "ratio"]
    _baseline(tmp_path, {"Kind A": {"figures": {"lsh4_vs_full_8k": {"ratio": 0.2}}}})
    blocks = build_history(_context(tmp_path, pd.DataFrame(rows)))
    assert blocks is not None
    (table,) = [b for b in blocks if isinstance(b, Table)]
    gates = table.frame.set_index(["figure", "machine kind"])["gate"]
    assert gates[("lsh4_vs_full_8k", "Kind A")] == "<= 0.250 (baseline 0.200 x 1.25)"
    assert gates[("lsh4_vs_full_8k", "Kind B")] == "not gated: no baseline on this kind"
    assert gates[("saved_bytes_slope_lsh", "Kind A")] == "<= 1.15"
    assert (
        table.frame.set_index(["figure", "machine kind"]).loc[("lsh4_vs_full_8k", "Kind B"), "runs"]
        == "1"
    )
    svg = (tmp_path / "report" / "figures" / "ci_history.svg").read_text()
    assert "Kind A" in svg and "Kind B" in svg  # one legend entry per kind, not per host


def test_without_a_baseline_file_the_section_says_so(tmp_path):
    blocks = build_history(_context(tmp_path, pd.DataFrame(history_rows())))
    assert blocks is not None
    assert "Ratio gates not drawn: no " in blocks[0].text
    (table,) = [b for b in blocks if isinstance(b, Table)]
    assert set(table.frame["gate"]) >= {"not gated: no baseline on this kind", "<= 1.15"}
