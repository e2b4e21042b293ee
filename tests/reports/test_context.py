"""What ReportContext.save writes: a figure titled in words, the grid named in the
caption and, for a smoke grid, on the image."""

from __future__ import annotations

from reports.build import build_reports
from tests.reports.synthetic import ablation_rows, write_results

DPI = 30


def test_panel_titles_are_words_and_captions_name_the_grid(tmp_path):
    rows = [dict(row, mode="quick") for row in ablation_rows() if row["suite"] == "hashes"]
    results = write_results(tmp_path / "results", rows)
    (report,) = build_reports(str(results), str(tmp_path / "out"), dpi=DPI)
    svg = (report / "figures" / "hashes_ablation.svg").read_text()
    assert "phase=" not in svg and "training step<" in svg
    assert "--quick smoke grid" in svg  # on the image itself
    markdown = (report / "report.md").read_text()
    assert "Grid: quick. The quick grid is a smoke run of tiny models" in markdown
