"""How many timed samples a point needs before its median is read as a measurement.

``Timer.blocked_autorange`` stops once its time budget is spent, so a step slower than the
budget yields one sample, and one sample has no spread: its IQR reads 0 and nothing says
whether a second call would agree. The harness therefore times at least ``MIN_SAMPLES``
calls per point by default (suites.harness.measure), and a row with fewer (an older row,
or a suite that times one step on purpose, such as scale) is marked wherever its time is
drawn: :data:`FEW_MARK` in tables, an open marker in figures. One rule for the harness and
the report.
"""

from __future__ import annotations

import math
from typing import Any

MIN_SAMPLES = 3
FEW_MARK = "†"
FEW_RULE = f"fewer than {MIN_SAMPLES} timed samples"


def few_samples(n_samples: Any) -> bool:
    """True when a row's ``n_samples`` is a number below MIN_SAMPLES; False when it is
    missing (a row that measured no time, or one from before rows recorded it)."""
    try:
        count = float(n_samples)
    except (TypeError, ValueError):
        return False
    return not math.isnan(count) and count < MIN_SAMPLES


def row_has_few_samples(row: dict[str, Any]) -> bool:
    return few_samples(row.get("n_samples"))
