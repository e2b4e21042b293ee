"""The point counts and the paper-form tables spell failures out."""

from __future__ import annotations

import pandas as pd

from reports.load import latest_points, normalise
from reports.sections.front_matter import counts_table
from reports.sections.measured import paper_form
from tests.reports.synthetic import memory_rows


def test_counts_and_paper_form_spell_out_failures():
    rows = latest_points(normalise(pd.DataFrame(memory_rows())))
    counts = counts_table(rows, raw_rows=len(rows) + 3).frame
    assert counts.loc["memory"].to_dict() == {
        "points": "80",
        "ok": "74",
        "oom": "2",
        "timeout": "0",
        "error": "1",
        "skipped": "3",
        "under load": "0",
    }
    table = paper_form(rows, "peak_mib").set_index(["model", "n_layers", "phase"])
    assert list(table.columns) == ["512", "1024", "2048", "4096", "8192"]
    # failed rows lack num_threads, yet sit on their model's line
    assert table.loc[("transformer-full", "2", "train_step"), "4096"] == "OOM"
    assert table.loc[("transformer-full", "2", "train_step"), "8192"] == "skipped"
    assert table.loc[("transformer-full", "6", "train_step"), "2048"] == "OOM"
    assert table.loc[("reformer-lsh", "2", "fwd"), "8192"] == "error"
