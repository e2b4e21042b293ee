"""Interleaved timing of two steps in one process, and the ratio of their medians.

Absolute times on a shared machine swing by 10-20% from minute to minute; the *ratio* of two
steps timed in alternation, round after round, in the same process, mostly does not: a slow
minute slows both. The order within a round alternates (A B, B A, A B, ...) so that
neither step always runs right after the other's allocations or right after a pause.

Steps are timed in CPU seconds of the process (``time.process_time``) by default: with
one intra-op thread that is the step's own work, and it leaves out the time spent waiting
for a core, the largest effect of other jobs on a shared machine. What load still does
(contended caches and memory bandwidth) shows up in both steps.

The noise of the ratio is estimated by a paired bootstrap over rounds (resampling whole
rounds keeps each round's A and B together), and reported beside the ratio, so a failure
message can say whether the move is far outside this run's own noise.
"""

from __future__ import annotations

import math
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

BOOTSTRAP_SAMPLES = 2000
BAND = (0.05, 0.95)  # the bootstrap band reported: 90% of resampled ratios fall inside


def interleaved_round(
    steps: Sequence[Callable[[], None]],
    times: Sequence[list[float]],
    clock: Callable[[], float] = time.process_time,
) -> Callable[[], None]:
    """A callable that runs every step once, appending each one's seconds to its list.

    Call ``k`` runs the steps in order when k is even and in reverse order when k is odd.
    """
    if len(steps) != len(times):
        raise ValueError(f"got {len(steps)} steps but {len(times)} time lists")
    calls = 0

    def run_round() -> None:
        nonlocal calls
        order = range(len(steps)) if calls % 2 == 0 else reversed(range(len(steps)))
        calls += 1
        for index in order:
            start = clock()
            steps[index]()
            times[index].append(clock() - start)

    return run_round


@dataclass(frozen=True)
class RatioSummary:
    """Ratio of medians numerator / denominator, with this run's bootstrap band."""

    ratio: float
    ratio_low: float  # BAND[0] quantile of bootstrap ratios
    ratio_high: float  # BAND[1] quantile
    numerator_median_s: float
    denominator_median_s: float
    numerator_iqr_s: float
    denominator_iqr_s: float
    rounds: int

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def ratio_of_medians(
    numerator: Sequence[float], denominator: Sequence[float], seed: int = 0
) -> RatioSummary:
    """Summarize paired times (seconds, one pair per round) as a ratio of medians."""
    if len(numerator) != len(denominator) or not numerator:
        raise ValueError(
            f"need the same positive number of rounds for both steps; got "
            f"{len(numerator)} and {len(denominator)}"
        )
    if min(*numerator, *denominator) <= 0 or not all(
        map(math.isfinite, (*numerator, *denominator))
    ):
        raise ValueError("times must be positive finite seconds")
    rng = random.Random(seed)
    rounds = len(numerator)
    resampled = []
    for _ in range(BOOTSTRAP_SAMPLES):
        picks = [rng.randrange(rounds) for _ in range(rounds)]
        resampled.append(
            statistics.median(numerator[i] for i in picks)
            / statistics.median(denominator[i] for i in picks)
        )
    resampled.sort()
    return RatioSummary(
        ratio=statistics.median(numerator) / statistics.median(denominator),
        ratio_low=_quantile(resampled, BAND[0]),
        ratio_high=_quantile(resampled, BAND[1]),
        numerator_median_s=statistics.median(numerator),
        denominator_median_s=statistics.median(denominator),
        numerator_iqr_s=_iqr(numerator),
        denominator_iqr_s=_iqr(denominator),
        rounds=rounds,
    )


def _quantile(ordered: Sequence[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _iqr(values: Sequence[float]) -> float:
    if len(values) < 2:
        return 0.0
    quartiles = statistics.quantiles(values, n=4)
    return quartiles[2] - quartiles[0]
