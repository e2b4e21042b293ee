"""The committed reports are what `python -m reports.build` makes from the committed rows
and code, so the bare command (as the docs give it to maintainers) changes no tracked
file. After a change to reports/ or suites/rows/, or to the model code (reformer/,
baselines/), whose commits since each run the reports count: commit it, rebuild, commit
the reports."""

from __future__ import annotations

import pytest

from reports.build import DEFAULT_OUT, build_reports
from reports.index import INDEX_FILE
from suites.harness.environment import REPO_ROOT
from suites.rows.store import COMMITTED_OUT
from tests.reports.test_readme_block import _unresolvable_shas


@pytest.mark.slow
def test_the_committed_reports_are_what_the_build_makes_of_the_committed_rows(
    tmp_path, monkeypatch
):
    missing = _unresolvable_shas()
    if missing:
        pytest.skip(f"a shallow clone: {len(missing)} run shas are not here ({missing[0]})")
    monkeypatch.chdir(REPO_ROOT)  # the report names its --results as given: "results"
    built = build_reports(str(COMMITTED_OUT), str(tmp_path), command="python -m reports.build")
    committed = REPO_ROOT / DEFAULT_OUT
    assert sorted(p.name for p in built) == sorted(
        p.name for p in committed.iterdir() if p.is_dir()
    ), "docs/reports/ holds a report folder the build no longer makes, or lacks one"
    assert (tmp_path / INDEX_FILE).read_text() == (committed / INDEX_FILE).read_text(), (
        f"{INDEX_FILE}: rebuild with `python -m reports.build`"
    )
    for folder in built:
        fresh = (folder / "report.md").read_text()
        kept = (committed / folder.name / "report.md").read_text()
        assert fresh == kept, f"{folder.name}: rebuild with `python -m reports.build`"
        figures = {p.name for p in (folder / "figures").iterdir()}
        assert figures == {p.name for p in (committed / folder.name / "figures").iterdir()}
