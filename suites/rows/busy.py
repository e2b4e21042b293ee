"""When a measurement was taken on a busy machine: one rule for warnings, summaries, reports.

A point is *measured under load* when the 1-minute load average at its end exceeds 1.25 x
the number of CPUs the process could use: more threads wanted to run than there were cores,
so each OpenMP barrier waited for a time slice and times inflate, often several-fold.
Memory figures do not depend on load. The margin is for the sweep itself: its child runs
up to n_cpus threads and the parent adds bursts, so on an idle 2-core machine our own runs
read 1.9-2.25 (the committed quality run); another job's two busy threads read 3.5 or more.
"""

from __future__ import annotations

import math
from typing import Any

OVERSUBSCRIBED = 1.25  # load average per CPU above which a point is measured under load
RULE = f"1-minute load average above {OVERSUBSCRIBED:g} x the CPU count"
MARK = "*"


def is_busy(load_avg_1m: Any, n_cpus: Any) -> bool:
    """True when ``load_avg_1m`` > OVERSUBSCRIBED x ``n_cpus``; False when either is missing
    or not a number."""
    try:
        load, cpus = float(load_avg_1m), float(n_cpus)
    except (TypeError, ValueError):
        return False
    if math.isnan(load) or math.isnan(cpus) or cpus <= 0:
        return False
    return load > OVERSUBSCRIBED * cpus


def row_is_busy(row: dict[str, Any]) -> bool:
    return is_busy(row.get("load_avg_1m"), row.get("n_cpus"))


def busy_note(busy: int, total: int, n_cpus: Any) -> str:
    """One line for a summary: how many points were measured under load, and what it means."""
    cpus = "" if n_cpus is None else f" ({n_cpus})"
    return (
        f"measured under load ({MARK}): {busy} of {total} points ran with the {RULE}"
        f"{cpus}; their times are inflated and not comparable with an idle run's "
        "(memory figures are unaffected)"
    )
