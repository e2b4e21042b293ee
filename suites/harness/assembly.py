"""Row assembly: one result row from the point, the environment and what was measured.

The harness writes rows, so assembly lives here, beside the point and the memory cap it reads;
suites.rows, which readers of rows import, stays free of the harness.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from suites.harness.process_memory import cap_mechanism
from suites.rows.schema import EXTRA_FIELDS, ROW_FIELDS, SCHEMA_VERSION
from suites.rows.store import utc_now

if TYPE_CHECKING:
    from suites.harness.points import Point


def assemble_row(
    suite: str,
    run_id: str,
    env: dict[str, Any],
    point: Point,
    key: str,
    result: dict[str, Any],
    max_memory_gb: float | None,
    timeout_s: float | None,
) -> dict[str, Any]:
    """Every schema field (null where not measured), then the point's and runner's own."""
    row: dict[str, Any] = dict.fromkeys(ROW_FIELDS + EXTRA_FIELDS)
    row |= {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id,
        "timestamp_utc": utc_now(),
        "suite": suite,
        **env,
        **point.params,
        "point_key": key,
        "max_memory_gb": max_memory_gb,
        "timeout_s": timeout_s or point.timeout_s,
        "memory_cap": cap_mechanism(point.params.get("device"), max_memory_gb),
        "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    return row | result
