"""The ablation sections: what the hash-rounds section draws, and the chunks figure's
bucket sweep."""

from __future__ import annotations

import pandas as pd

from reports.build import build_reports
from reports.load import normalise
from reports.sections.ablations import at_default_slice_budget
from tests.reports.synthetic import ablation_rows, quality_rows, write_results

DPI = 30


def test_a_hash_rounds_section_from_quality_rows_alone_says_so(tmp_path):
    results = write_results(tmp_path / "results", quality_rows())
    (report,) = build_reports(str(results), str(tmp_path / "out"), dpi=DPI)
    markdown = (report / "report.md").read_text()
    assert "No results for suites: " in markdown
    assert "drawn from other suites' rows below: Hash rounds" in markdown
    assert "There are no hashes-suite rows, so the cost of more rounds is not drawn" in markdown
    svg = (report / "figures" / "hashes_ablation.svg").read_text()
    assert "what more rounds cost" not in svg and "duplication accuracy" in svg


def test_a_hash_rounds_figure_without_quality_rows_promises_no_accuracy(tmp_path):
    results = write_results(tmp_path / "results", ablation_rows())
    (report,) = build_reports(str(results), str(tmp_path / "out"), dpi=DPI)
    svg = (report / "figures" / "hashes_ablation.svg").read_text()
    assert "Hash rounds: what more rounds cost" in svg and "accuracy" not in svg


def test_the_chunks_figure_draws_the_bucket_sweep_alone():
    # Slice-sweep rows record slice_elements and share bucket_size 64 with the bucket
    # sweep's point at the default budget, which records none.
    rows = normalise(
        pd.DataFrame(
            [
                {"suite": "chunks", "model": "attn-lsh", "status": "ok", "bucket_size": 32},
                {"suite": "chunks", "model": "attn-lsh", "status": "ok", "bucket_size": 64},
                {
                    "suite": "chunks",
                    "model": "attn-lsh",
                    "status": "ok",
                    "bucket_size": 64,
                    "slice_elements": 2**15,
                },
            ]
        )
    )
    assert list(at_default_slice_budget(rows)["bucket_size"]) == [32, 64]
    older = rows.drop(columns="slice_elements").iloc[:2]  # rows from before the sweep
    assert at_default_slice_budget(older).equals(older)
