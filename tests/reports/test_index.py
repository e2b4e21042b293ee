"""One current report per machine kind, listed with the runs it superseded."""

from __future__ import annotations

from reports.build import build_reports
from reports.index import INDEX_FILE
from tests.reports.synthetic import all_rows, write_results


def test_the_index_links_each_kinds_report_and_lists_superseded_runs(tmp_path, caplog):
    results = write_results(tmp_path / "results", all_rows())
    out = tmp_path / "out"
    stale = out / "paper_test-cpu-model-9-2-00ghz_2020-01-01"
    stale.mkdir(parents=True)  # an older report of the same kind, left by an earlier build
    (report,) = build_reports(str(results), str(out), theme="paper", dpi=30)
    index = (out / INDEX_FILE).read_text()
    assert f"[{report.name}]({report.name}/report.md)" in index
    assert "Test(R) CPU Model 9 @ 2.00GHz" in index and " of " in index
    # the older --quick memory run and the one-thread time run are superseded, not drawn
    superseded = index[index.index("## Superseded runs") :]
    assert "| memory | 1 |" in superseded and "| time | 1 |" in superseded
    assert any(str(stale) in record.getMessage() for record in caplog.records)


def test_a_filtered_build_writes_no_index(tmp_path):
    results = write_results(tmp_path / "results", all_rows())
    build_reports(str(results), str(tmp_path / "out"), dpi=30, runs="all")
    assert not (tmp_path / "out" / INDEX_FILE).exists()
