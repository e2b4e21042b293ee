"""Which row of a point counts: the newest, one rule for the harness's summary and the report."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any


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
