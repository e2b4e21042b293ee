"""The measurements behind the CI gates: interleaved timing and ratio statistics,
and the deterministic counters on small shapes (the CI run measures the real ones)."""

from __future__ import annotations

import pytest

from reformer.config import PRESETS
from suites.ci.deterministic import (
    attention_core_flops,
    depth_saved_bytes,
    layer_saved_bytes,
    loglog_slope,
    per_token_spread,
)
from suites.ci.timing import interleaved_round, ratio_of_medians

DEBUG = PRESETS["debug"]


def test_interleaved_round_alternates_the_order():
    calls: list[str] = []
    times: tuple[list[float], list[float]] = ([], [])
    run_round = interleaved_round((lambda: calls.append("a"), lambda: calls.append("b")), times)
    for _ in range(3):
        run_round()
    assert calls == ["a", "b", "b", "a", "a", "b"]
    assert len(times[0]) == len(times[1]) == 3 and min(*times[0], *times[1]) >= 0
    with pytest.raises(ValueError, match="time lists"):
        interleaved_round((lambda: None,), times)


def test_ratio_of_medians_and_its_band():
    numerator = [2.0, 2.2, 1.8, 2.1, 9.0]  # one round hit by a burst of load
    denominator = [1.0, 1.1, 0.9, 1.0, 1.0]
    summary = ratio_of_medians(numerator, denominator)
    assert summary.ratio == pytest.approx(2.1 / 1.0)
    assert summary.ratio_low <= summary.ratio <= summary.ratio_high
    assert summary.rounds == 5 and summary.numerator_median_s == pytest.approx(2.1)
    assert ratio_of_medians(numerator, denominator) == summary  # seeded bootstrap
    steady = ratio_of_medians([3.0] * 7, [1.5] * 7)
    assert steady.ratio == steady.ratio_low == steady.ratio_high == pytest.approx(2.0)
    with pytest.raises(ValueError, match="same positive number of rounds"):
        ratio_of_medians([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="positive finite"):
        ratio_of_medians([0.0], [1.0])


def test_saved_bytes_scale_linearly_for_lsh_and_quadratically_for_full():
    lengths = (256, 512, 1024)
    lsh = layer_saved_bytes("lsh", lengths, DEBUG)
    full = layer_saved_bytes("full", lengths, DEBUG)
    assert loglog_slope(lengths, [lsh[n] for n in lengths]) < 1.15
    assert loglog_slope(lengths, [full[n] for n in lengths]) > 1.5
    assert full[1024] > lsh[1024]


def test_reversible_saved_bytes_do_not_grow_with_depth():
    points = depth_saved_bytes(depths=(1, 4), seq_len=128, config=DEBUG)
    assert points[1] > 0 and points[4] == points[1]


def test_counted_flops_per_token():
    lengths = (512, 1024, 2048, 4096)
    config = PRESETS["default"]  # counted on meta tensors: instant at any size
    lsh = [attention_core_flops("lsh", n, config) / n for n in lengths]
    full = [attention_core_flops("full", n, config) / n for n in lengths]
    assert per_token_spread(lsh) < 0.10
    assert loglog_slope(lengths, full) == pytest.approx(1.0)
    # full: QK^T and AV forward, twice each backward: 6 products of 2*L*L*d_head per head
    assert full[-1] == 6 * 2 * config.n_heads * lengths[-1] * config.d_head
    with pytest.raises(ValueError, match="allowed|gated"):
        attention_core_flops("sdpa", 256, config)
