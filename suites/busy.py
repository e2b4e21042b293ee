"""When a measurement was taken on a busy machine: one rule for warnings, summaries, reports.

A point is *measured under load* when the 1-minute load average at its end exceeds the
number of CPUs the process could use: more threads wanted to run than there were cores, so
each OpenMP barrier waited for a time slice and times inflate, often several-fold. Memory
figures do not depend on load. The sweep's own child counts towards the load (it runs up
to n_cpus threads), so an otherwise idle machine stays at or under the line.
"""

from __future__ import annotations

import math
from typing import Any

RULE = "1-minute load average above the CPU count"
MARK = "*"


def is_busy(load_avg_1m: Any, n_cpus: Any) -> bool:
    """True when ``load_avg_1m`` > ``n_cpus``; False when either is missing or not a number."""
    try:
        load, cpus = float(load_avg_1m), float(n_cpus)
    except (TypeError, ValueError):
        return False
    if math.isnan(load) or math.isnan(cpus) or cpus <= 0:
        return False
    return load > cpus


def row_is_busy(row: dict[str, Any]) -> bool:
    return is_busy(row.get("load_avg_1m"), row.get("n_cpus"))


def busy_note(busy: int, total: int, n_cpus: Any) -> str:
    """One line for a summary: how many points were measured under load, and what it means."""
    cpus = "" if n_cpus is None else f" ({n_cpus})"
    return (f"measured under load ({MARK}): {busy} of {total} points ran with the {RULE}"
            f"{cpus}; their times are inflated and not comparable with an idle run's "
            "(memory figures are unaffected)")
