from __future__ import annotations

import math

import pytest

from suites.rows.samples import MIN_SAMPLES, few_samples, row_has_few_samples


@pytest.mark.parametrize(
    ("n_samples", "few"),
    [(1, True), (MIN_SAMPLES - 1, True), (MIN_SAMPLES, False), (64, False), ("2", True)],
)
def test_a_count_below_min_samples_is_few(n_samples, few):
    assert few_samples(n_samples) is few


@pytest.mark.parametrize("missing", [None, math.nan, "n/a"])
def test_a_row_without_a_count_is_not_marked(missing):
    assert few_samples(missing) is False
    assert row_has_few_samples({"n_samples": missing}) is False
    assert row_has_few_samples({}) is False
