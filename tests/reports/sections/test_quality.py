"""The quality section's duplication matrix and its expectations."""

from __future__ import annotations

import pandas as pd
import pytest

from reports.load import normalise
from reports.sections.quality import duplication_matrices, expectation_table
from tests.reports.synthetic import quality_rows


def test_duplication_matrix_and_expectations():
    rows = normalise(pd.DataFrame(quality_rows()))
    (matrix,) = duplication_matrices(rows).values()
    assert list(matrix.index) == ["Full", "LSH-4", "LSH-2", "LSH-1"]
    assert list(matrix.columns) == ["Full", "LSH-8", "LSH-4", "LSH-2", "LSH-1"]
    # fractions shown as percent, the mean of three seeds (99.4, 95.4, 97.4)
    assert matrix.loc["LSH-4", "LSH-2"] == pytest.approx(97.4)
    (spread,) = duplication_matrices(rows, "std").values()
    assert spread.loc["LSH-4", "LSH-2"] == pytest.approx(2.0)
    (seeds,) = duplication_matrices(rows, "seeds").values()
    assert (seeds == 3).all().all()
    missed = matrix.copy()
    missed.loc["LSH-4", "LSH-4"] = 90.0
    missed.loc["Full", "Full"] = 99.5
    checks = expectation_table(missed).set_index(["trained", "evaluated"])
    assert checks.loc[("LSH-4", "LSH-4"), "met"] == "NO"
    assert checks.loc[("LSH-4", "LSH-4"), "measured"] == "90"
    assert checks.loc[("Full", "Full"), "met"] == "yes"
