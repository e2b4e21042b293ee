"""The one rule for which quality rows are final (suites.rows.quality_matrix), and that the
suite's summary and the report both follow it."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from reports.load import normalise
from reports.sections.quality import duplication_matrices
from suites.quality.summary import duplication_matrix
from suites.rows.quality_matrix import counts_in_matrix, final_accuracies, final_indices


def _row(seed: float, step: float | None, accuracy: float | None, stamp: str | None = None, **more):
    return {
        "status": "ok",
        "suite": "quality",
        "model": "reformer-lsh",
        "task": "duplication",
        "seq_len": 32,
        "train_attention": "lsh-4",
        "eval_attention": "lsh-4",
        "seed": seed,
        "step": step,
        "steps": 300,
        "accuracy": accuracy,
        "timestamp_utc": stamp,
        **more,
    }


def test_a_run_that_stopped_early_counts_with_its_last_step():
    rows = [
        _row(0, 100, 0.10),
        _row(0, 200, 0.20),  # seed 0 stopped here, before its 300th step
        _row(1, 100, 0.50),
        _row(1, 300, 0.90),
    ]
    finals = final_accuracies(rows)
    assert [(f.seed, f.step, f.accuracy) for f in finals] == [(0, 200, 20.0), (1, 300, 90.0)]
    # Per seed, not per cell: seed 0 is not dropped because seed 1 went further.
    assert duplication_matrix(rows)[("lsh-4", "lsh-4")] == pytest.approx(55.0)


def test_two_rows_of_one_seed_at_one_step_the_newest_counts():
    rows = [
        _row(0, 300, 0.70, "2026-11-29T02:00:00+00:00"),
        _row(0, 300, 0.95, "2026-11-29T03:00:00+00:00"),  # measured again, later
        _row(0, 300, 0.10, "2026-11-29T01:00:00+00:00"),  # older, though written last
    ]
    assert [f.accuracy for f in final_accuracies(rows)] == [95.0]
    # Without stamps the later row wins; a stamped row beats an unstamped one.
    assert [f.accuracy for f in final_accuracies([_row(0, 300, 0.7), _row(0, 300, 0.8)])] == [80.0]
    stamped = [_row(0, 300, 0.7, "2026-11-29T02:00:00+00:00"), _row(0, 300, 0.8)]
    assert [f.accuracy for f in final_accuracies(stamped)] == [70.0]


def test_cells_variants_and_rows_that_do_not_count():
    rows = [
        _row(0, 300, 0.9),
        _row(0, 300, 0.5, eval_attention="lsh-1"),
        _row(0, 300, 0.6),  # another variant of the first cell
        _row(0, 300, 1.0, status="error"),
        _row(0, 300, None),
        _row(0, 300, 1.0, task="bytes"),
    ]
    assert [counts_in_matrix(r) for r in rows] == [True, True, True, False, False, False]
    finals = final_accuracies(rows, ["a", "a", "b", "a", "a", "a"])
    assert [(f.variant, f.evaluated, f.accuracy) for f in finals] == [
        ("a", "lsh-4", 90.0),
        ("a", "lsh-1", 50.0),
        ("b", "lsh-4", 60.0),
    ]
    assert finals[0].row is rows[0]
    with pytest.raises(ValueError, match="variants must be one per row"):
        final_accuracies(rows, ["a"])


def test_missing_values_as_a_table_spells_them():
    nan = math.nan
    # NaN seeds make one cell; a NaN step ranks below a recorded one.
    rows = [_row(nan, 300, 0.4), _row(nan, nan, 0.8)]
    (final,) = final_accuracies(rows)
    assert (final.seed, final.step, final.accuracy) == (None, 300, 40.0)
    assert final_indices([("x", nan), ("x", None)], [1, 1], [nan, None]) == [1]
    with pytest.raises(ValueError, match="one per row"):
        final_indices(["x"], [1, 2], [None])


def test_the_report_and_the_summary_agree():
    rows = [
        _row(0, 100, 0.10, "2026-11-29T01:00:00+00:00"),
        _row(0, 200, 0.20, "2026-11-29T02:00:00+00:00"),
        _row(1, 300, 0.80, "2026-11-29T03:00:00+00:00"),
        _row(1, 300, 0.90, "2026-11-29T04:00:00+00:00"),
        _row(1, 300, 0.99, "2026-11-29T04:30:00+00:00", eval_attention="lsh-8"),
    ]
    summary = duplication_matrix(rows)
    (report,) = duplication_matrices(normalise(pd.DataFrame(rows))).values()
    (seeds,) = duplication_matrices(normalise(pd.DataFrame(rows)), "seeds").values()
    assert summary[("lsh-4", "lsh-4")] == pytest.approx(55.0)
    assert report.loc["LSH-4", "LSH-4"] == pytest.approx(summary[("lsh-4", "lsh-4")])
    assert report.loc["LSH-4", "LSH-8"] == pytest.approx(summary[("lsh-4", "lsh-8")]) == 99.0
    assert seeds.loc["LSH-4", "LSH-4"] == 2 and seeds.loc["LSH-4", "LSH-8"] == 1


def test_no_matrix_rows_no_matrix():
    only_bytes = normalise(pd.DataFrame([_row(0, 300, None, task="bytes", bits_per_byte=2.0)]))
    assert duplication_matrices(only_bytes) == {}
    assert duplication_matrix(only_bytes.to_dict("records")) == {}
