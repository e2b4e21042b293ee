"""Row assembly: one result row from the point, the environment and what was measured."""

from __future__ import annotations

import os
from typing import Any

from suites.isolation import cap_mechanism
from suites.registry import Point
from suites.store import EXTRA_FIELDS, ROW_FIELDS, SCHEMA_VERSION, utc_now


def assemble_row(suite: str, run_id: str, env: dict[str, Any], point: Point, key: str,
                 result: dict[str, Any], max_memory_gb: float | None,
                 timeout_s: float | None) -> dict[str, Any]:
    """Every schema field (null where not measured), then the point's and runner's own."""
    row: dict[str, Any] = dict.fromkeys(ROW_FIELDS + EXTRA_FIELDS)
    row |= {"schema_version": SCHEMA_VERSION, "run_id": run_id, "timestamp_utc": utc_now(),
            "suite": suite, **env, **point.params, "point_key": key,
            "max_memory_gb": max_memory_gb, "timeout_s": timeout_s or point.timeout_s,
            "memory_cap": cap_mechanism(point.params.get("device"), max_memory_gb),
            "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}
    return row | result


def latest_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The last row of each point key, in first-seen order (a re-measured point's newest)."""
    by_key: dict[Any, dict[str, Any]] = {}
    for row in rows:
        by_key[row.get("point_key", id(row))] = row
    return list(by_key.values())
