"""Crossover finder on curves whose crossings are known in closed form."""

import math

import pytest

from suites.rows.crossover import crossovers_between, find_crossovers

LENGTHS = [256, 512, 1024, 2048, 4096]


def test_power_laws_cross_exactly_where_they_are_equal():
    # flat 10 ms against L/100 ms: equal at L = 1000, and log-log interpolation is exact
    flat = [10.0] * len(LENGTHS)
    linear = [x / 100 for x in LENGTHS]
    (crossing,) = find_crossovers(LENGTHS, flat, linear)
    assert crossing.seq_len == pytest.approx(1000.0, rel=1e-9)
    assert crossing.cost == pytest.approx(10.0, rel=1e-9)
    assert crossing.lower_after == "a"  # the flat curve is cheaper above 1000


def test_quadratic_against_linear_crossing():
    # 0.001 L^2 against 2 L: equal at L = 2000
    quadratic = [1e-3 * x**2 for x in LENGTHS]
    linear = [2.0 * x for x in LENGTHS]
    (crossing,) = find_crossovers(LENGTHS, linear, quadratic)
    assert crossing.seq_len == pytest.approx(2000.0, rel=1e-9)
    assert crossing.lower_after == "a"


def test_curves_that_never_cross():
    assert find_crossovers(LENGTHS, [float(x) for x in LENGTHS], [2.0 * x for x in LENGTHS]) == []


def test_curves_that_cross_twice():
    # b dips under a constant a and comes back: log ratio ±log 2 at 1, 2, 4
    crossings = find_crossovers([1, 2, 4], [10.0, 10.0, 10.0], [20.0, 5.0, 20.0])
    assert [c.seq_len for c in crossings] == pytest.approx([math.sqrt(2), 2 * math.sqrt(2)])
    assert [c.lower_after for c in crossings] == ["b", "a"]


def test_touching_is_not_crossing_but_passing_through_an_equal_point_is():
    assert find_crossovers([1, 2, 4], [1.0, 2.0, 1.0], [2.0, 2.0, 2.0]) == []
    (crossing,) = find_crossovers([1, 2, 4], [1.0, 2.0, 4.0], [2.0, 2.0, 2.0])
    assert crossing.seq_len == pytest.approx(2.0)
    assert crossing.lower_after == "b"


def test_fewer_than_two_points_give_nothing():
    assert find_crossovers([1024], [1.0], [2.0]) == []
    assert find_crossovers([], [], []) == []


def test_crossovers_between_uses_only_shared_lengths():
    a = {512: 10.0, 1024: 10.0, 2048: 10.0, 3000: 1.0}
    b = {256: 99.0, 512: 5.0, 2048: 20.0}
    (crossing,) = crossovers_between(a, b)
    assert crossing.seq_len == pytest.approx(1024.0, rel=1e-9)  # log-midpoint of 512..2048


@pytest.mark.parametrize(
    ("lengths", "a", "b", "message"),
    [
        ([1, 2], [1.0], [1.0, 2.0], "differ in size"),
        ([2, 1], [1.0, 2.0], [1.0, 2.0], "strictly increasing"),
        ([1, 2], [0.0, 2.0], [1.0, 2.0], "positive"),
    ],
)
def test_bad_input_is_named(lengths, a, b, message):
    with pytest.raises(ValueError, match=message):
        find_crossovers(lengths, a, b)
