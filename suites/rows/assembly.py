"""Row assembly: one result row from the point, the environment and what was measured."""

from __future__ import annotations

import os
from collections.abc import Hashable, Sequence
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


def newest_per_point(keys: Sequence[Hashable], stamps: Sequence[Any]) -> list[int]:
    """Indices, in row order, of the newest row of each point (``keys[i]`` is row i's point).

    Newest: the latest stamp, the later row breaking ties (a re-measured point's last row);
    a row without a stamp (None) is older than any with one. The one rule for the
    harness's summary and the report.
    """
    best: dict[Hashable, tuple[tuple[bool, Any, int], int]] = {}
    for index, (key, stamp) in enumerate(zip(keys, stamps, strict=True)):
        rank = (stamp is not None, stamp, index)
        if key not in best or rank >= best[key][0]:
            best[key] = (rank, index)
    return sorted(index for _, index in best.values())


def latest_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The newest row of each point key (rows without a key are each their own point)."""
    keep = newest_per_point(
        [row.get("point_key", id(row)) for row in rows], [row.get("timestamp_utc") for row in rows]
    )
    return [rows[index] for index in keep]
