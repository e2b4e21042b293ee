"""Crossover lengths: where one cost curve overtakes another (paper Fig. 5 annotations).

The one home of this computation: the time suite's terminal summary and the report's time
figure and table both call :func:`crossovers_between`, so they cannot disagree.

Costs against length are close to power laws, so both axes are interpolated in log space:
between two adjacent measured lengths the log ratio ``log(a / b)`` is taken as linear in
``log L`` and its zero is the crossover. Only lengths measured for both curves are used;
a curve that merely touches the other (ratio 1, same side before and after) does not cross.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Crossover:
    seq_len: float  # interpolated length where the two curves are equal
    cost: float  # interpolated cost of both curves there
    lower_after: str  # "a" or "b": the curve that is cheaper just above seq_len


def find_crossovers(
    lengths: Sequence[float], a: Sequence[float], b: Sequence[float]
) -> list[Crossover]:
    """Every crossing of curves ``a`` and ``b`` measured at the same ``lengths``.

    lengths: (n,) strictly increasing positive lengths; a, b: (n,) positive costs.
    Returns crossings in increasing length; empty if the curves never cross or n < 2.
    """
    if not len(lengths) == len(a) == len(b):
        raise ValueError(f"lengths, a and b differ in size: {len(lengths)}, {len(a)}, {len(b)}")
    if any(x <= 0 for x in lengths) or any(
        longer <= shorter for shorter, longer in zip(lengths, lengths[1:], strict=False)
    ):
        raise ValueError(f"lengths must be positive and strictly increasing, got {list(lengths)}")
    if any(v <= 0 for v in (*a, *b)):
        raise ValueError("costs must be positive to compare them on a log scale")
    log_len = [math.log(x) for x in lengths]
    gap = [math.log(ya / yb) for ya, yb in zip(a, b, strict=True)]
    crossings = []
    previous = None  # index of the last length where the curves differed
    for index, value in enumerate(gap):
        if value == 0:
            continue
        if previous is not None and (value > 0) != (gap[previous] > 0):
            seq_len = _zero_between(log_len, gap, previous, index)
            crossings.append(
                Crossover(
                    seq_len=seq_len,
                    cost=_log_interpolate(lengths, a, seq_len),
                    lower_after="a" if value < 0 else "b",
                )
            )
        previous = index
    return crossings


def _zero_between(log_len: list[float], gap: list[float], left: int, right: int) -> float:
    if right == left + 1:
        t = gap[left] / (gap[left] - gap[right])
        return math.exp(log_len[left] + t * (log_len[right] - log_len[left]))
    # Equal at one or more measured lengths in between: the middle of that run (in log L).
    return math.exp((log_len[left + 1] + log_len[right - 1]) / 2)


def _log_interpolate(lengths: Sequence[float], costs: Sequence[float], at: float) -> float:
    points = list(zip(lengths, costs, strict=True))
    for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False):
        if x0 <= at <= x1:
            t = math.log(at / x0) / math.log(x1 / x0)
            return math.exp(math.log(y0) + t * math.log(y1 / y0))
    raise ValueError(f"length {at} is outside the measured range")


def crossovers_between(a: Mapping[Any, float], b: Mapping[Any, float]) -> list[Crossover]:
    """Crossings of two curves given as {length: cost} (int or float lengths), on the
    lengths both have."""
    shared = sorted(set(a) & set(b))
    return find_crossovers(shared, [a[x] for x in shared], [b[x] for x in shared])
