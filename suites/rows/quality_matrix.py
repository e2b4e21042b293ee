"""Which quality rows are final: the one rule for the end-of-run summary
(suites.quality.summary) and the report (reports.sections.quality), without torch or pandas.

A run is evaluated along training, so one (model, attention, seed) has a row per evaluated
step. Its final row is the one at the *largest recorded step*: a run that stopped before
its last step (killed, out of time) counts with the last step it reached. Among rows at
that step (a point measured again), the newest counts, by the harness's rule
(suites.rows.newest.newest_per_point: the latest ``timestamp_utc``, the later row on a
tie). A missing step or timestamp ranks below any recorded one.

The paper's Table 2 matrix is the final accuracy of each cell and seed, a cell being
(variant, trained attention, evaluated attention): :func:`final_accuracies`. Its rows are
the ``ok`` rows of the duplication task that record an accuracy (:func:`counts_in_matrix`).
A variant tells apart runs that share a cell but differ otherwise (say two model widths
under one results folder); the caller names it (the report derives labels from the config
columns, the suite's summary has one run file and one variant).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from suites.rows.newest import newest_per_point

DUPLICATION_TASK = "duplication"


@dataclass(frozen=True)
class FinalAccuracy:
    """One seed's final accuracy in one cell of the duplication matrix."""

    variant: str
    trained: str  # train_attention
    evaluated: str  # eval_attention
    seed: Any  # the row's seed (None where it has none)
    step: int | None  # the step it was evaluated at (None where the row has none)
    accuracy: float  # percent: rows record a fraction of the second half's tokens
    row: Mapping[str, Any]  # the row it came from


def percent(accuracy: float) -> float:
    """A row's accuracy (a fraction of the second half's tokens) in percent."""
    return 100.0 * float(accuracy)


def missing(value: Any) -> bool:
    """None, or a float NaN (how a table of rows spells a missing value)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def final_indices(
    cells: Sequence[Hashable], steps: Sequence[Any], stamps: Sequence[Any]
) -> list[int]:
    """Indices, in row order, of the final row of each cell (``cells[i]`` is row i's):
    the largest step, then the newest stamp, then the later row.

    Cells, steps and stamps may hold NaN for missing values; a missing step or stamp ranks
    below any recorded one."""
    if not len(cells) == len(steps) == len(stamps):
        raise ValueError(
            f"cells, steps and stamps must be one per row; got {len(cells)}, {len(steps)} "
            f"and {len(stamps)}"
        )
    order = [
        (not missing(step), 0 if missing(step) else step, not missing(stamp), _or_empty(stamp))
        for step, stamp in zip(steps, stamps, strict=True)
    ]
    return newest_per_point([_clean(cell) for cell in cells], order)


def counts_in_matrix(row: Mapping[str, Any]) -> bool:
    """Whether ``row`` is a candidate for the duplication matrix: an ``ok`` row of the
    duplication task with an accuracy."""
    return (
        row.get("status") == "ok"
        and row.get("task") == DUPLICATION_TASK
        and not missing(row.get("accuracy"))
    )


def final_accuracies(
    rows: Sequence[Mapping[str, Any]], variants: Sequence[str] | None = None
) -> list[FinalAccuracy]:
    """The duplication matrix's samples: for each (variant, trained, evaluated) cell and
    seed, the accuracy of its final row, in row order.

    ``variants[i]`` names row i's variant (None: every row is one variant, ``""``); rows
    that do not count (:func:`counts_in_matrix`) are passed over."""
    if variants is not None and len(variants) != len(rows):
        raise ValueError(f"variants must be one per row; got {len(variants)} for {len(rows)}")
    names = [""] * len(rows) if variants is None else list(variants)
    candidates = [i for i, row in enumerate(rows) if counts_in_matrix(row)]
    cells = [
        (
            names[i],
            rows[i].get("train_attention"),
            rows[i].get("eval_attention"),
            rows[i].get("seed"),
        )
        for i in candidates
    ]
    keep = final_indices(
        cells,
        [rows[i].get("step") for i in candidates],
        [rows[i].get("timestamp_utc") for i in candidates],
    )
    found = []
    for position in keep:
        row = rows[candidates[position]]
        step: Any = row.get("step")
        seed = row.get("seed")
        found.append(
            FinalAccuracy(
                variant=names[candidates[position]],
                trained=str(row.get("train_attention")),
                evaluated=str(row.get("eval_attention")),
                seed=None if missing(seed) else seed,
                step=None if missing(step) else int(step),
                accuracy=percent(row["accuracy"]),
                row=row,
            )
        )
    return found


def _clean(cell: Hashable) -> Hashable:
    """NaN as None inside a cell, so two missing values make one cell (NaN != NaN)."""
    if isinstance(cell, tuple):
        return tuple(None if missing(part) else part for part in cell)
    return None if missing(cell) else cell


def _or_empty(stamp: Any) -> Any:
    # Compared only with other recorded stamps (the flag before it differs otherwise).
    return "" if missing(stamp) else stamp
