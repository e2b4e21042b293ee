"""Timed suites take at least MIN_SAMPLES calls per point by default; the suites that
measure memory and draw no time (memory, scale) time one call."""

from __future__ import annotations

import pytest

from suites.harness.suite import GridContext
from suites.registry import get_suite
from suites.rows.samples import MIN_SAMPLES

TIMED = ("time", "hashes", "chunks", "reversible", "peers")


@pytest.mark.parametrize("suite", TIMED)
@pytest.mark.parametrize("mode", ["default", "paper"])
def test_every_point_of_a_timed_suite_asks_for_at_least_min_samples(suite, mode):
    points = get_suite(suite).grid(GridContext(device="cpu", mode=mode))
    assert points
    assert {point.min_samples for point in points} == {MIN_SAMPLES}
    assert all(point.runner_options()["min_samples"] == MIN_SAMPLES for point in points)


@pytest.mark.parametrize("suite", ["memory", "scale"])
def test_memory_suites_time_one_call(suite):
    points = get_suite(suite).grid(GridContext(device="cpu"))
    assert {point.min_samples for point in points} == {1}
