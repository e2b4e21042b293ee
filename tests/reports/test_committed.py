"""The committed reports are what `python -m reports.build` makes from the committed rows
and code, so the bare command (as the docs give it to maintainers) changes no tracked
file. After a change to reports/ or suites/rows/: commit it, rebuild, commit the reports."""

from __future__ import annotations

import pytest

from reports.build import DEFAULT_OUT, build_reports
from suites.harness.environment import REPO_ROOT
from suites.rows.store import COMMITTED_OUT


@pytest.mark.slow
def test_the_committed_reports_are_what_the_build_makes_of_the_committed_rows(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(REPO_ROOT)  # the report names its --results as given: "results"
    built = build_reports(str(COMMITTED_OUT), str(tmp_path), command="python -m reports.build")
    committed = REPO_ROOT / DEFAULT_OUT
    assert sorted(p.name for p in built) == sorted(p.name for p in committed.iterdir()), (
        "docs/reports/ holds a report folder the build no longer makes, or lacks one"
    )
    for folder in built:
        fresh = (folder / "report.md").read_text()
        kept = (committed / folder.name / "report.md").read_text()
        assert fresh == kept, f"{folder.name}: rebuild with `python -m reports.build`"
        figures = {p.name for p in (folder / "figures").iterdir()}
        assert figures == {p.name for p in (committed / folder.name / "figures").iterdir()}
