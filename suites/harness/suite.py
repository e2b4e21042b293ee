"""A suite: a grid of points sized to a :class:`GridContext`, plus an optional summary.

The suites themselves are declared in ``suites/grids/`` and found by suites.registry;
nothing here knows which exist. A :class:`suites.harness.points.Point` is one measurement.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from suites.harness.process_memory import MEMORY_BUDGET_GIB
from suites.rows.schema import MODES

if TYPE_CHECKING:
    from suites.harness.points import Point


@dataclass(frozen=True, kw_only=True)
class GridContext:
    """What a grid is sized for."""

    device: str  # "cpu" | "cuda"
    mode: str = "default"  # "quick" | "default" | "paper" (suites.rows.schema.MODES)
    memory_budget_gb: float = MEMORY_BUDGET_GIB  # the scale suite's budget
    out_dir: Path | None = None  # the results directory (for suites that keep artefacts)
    data: str | None = None  # quality suite: byte-LM corpus file or folder (None: stdlib)
    seeds: int = 1  # quality suite: models trained per cell, with seeds 0..seeds-1

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode={self.mode!r} is unknown; allowed: {MODES}")


@dataclass(frozen=True, kw_only=True)
class Suite:
    name: str
    description: str
    grid: Callable[[GridContext], list[Point]]
    # Extra lines for the end-of-run summary, from every row of the run file.
    summarize: Callable[[list[dict[str, Any]], GridContext], list[str]] | None = None
    # Per-child memory cap this suite wants by default (GiB); None: the harness default.
    default_max_memory_gb: Callable[[GridContext], float | None] | None = None
    in_all: bool = True  # whether ``python -m suites.run all`` includes it
    # Whether its points may run side by side (--jobs): only where its figures are not
    # times, which points sharing the cores would inflate.
    side_by_side: bool = False
