"""Where each suite of the record stands on this machine kind, read from the committed rows.

A suite's run here is the newest results file of the entry (its suite, mode, seeds and
lengths) whose rows were measured on this CPU model. Its state:

- ``missing``: no such run;
- ``stale`` / ``dirty`` / ``unknown``: its code is not HEAD's model code
  (suites.rows.staleness), so it is measured again from scratch;
- ``partial``: current code, but points are missing (a run was stopped): it is resumed;
- ``under load``: current and whole, but some point ran on a busy machine
  (suites.rows.busy): measured again;
- ``current``: current, whole, every point on an idle machine.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from suites.record.plan import Entry
from suites.rows.busy import row_is_busy
from suites.rows.samples import MIN_SAMPLES
from suites.rows.staleness import staleness
from suites.rows.store import read_rows, run_files

TODO_STATES = ("missing", "stale", "dirty", "unknown", "partial", "under load")


@dataclass(frozen=True)
class SuiteState:
    entry: Entry
    state: str
    path: Path | None  # the run's file (None when missing)
    detail: str  # e.g. "3 model commits", "4 of 30 points under load"
    estimate_s: float
    estimate_from: str  # where the estimate comes from

    @property
    def todo(self) -> bool:
        return self.state in TODO_STATES

    @property
    def resume(self) -> bool:
        """Continue the run's file (a stopped run at the current code) rather than --fresh."""
        return self.state == "partial"


def suite_state(
    entry: Entry,
    out_dir: Path,
    machine: str,
    *,
    root: Path | None = None,
    planned_points: list[int] | None = None,
) -> SuiteState:
    """The state of ``entry`` on CPU model ``machine`` from the files in ``out_dir``;
    ``planned_points``, the length (``seq_len``) of each point of the entry's grid today,
    says where the estimate's run had fewer points: new ones are counted at the mean wall
    time of the run's points of their length (else of all its points)."""
    runs = [(path, rows) for path, rows in _runs(entry, out_dir) if _machine(rows) == machine]
    estimate, source = _estimate(entry, out_dir, machine, planned_points)
    if not runs:
        return SuiteState(entry, "missing", None, "no run on this machine kind", estimate, source)
    path, rows = runs[-1]
    code = staleness(
        [row.get("git_sha") for row in rows], [row.get("git_dirty") for row in rows], root=root
    )
    if not code.current:
        return SuiteState(entry, code.state, path, code.label(), estimate, source)
    expected = max(int(row.get("grid_points") or 0) for row in rows)
    measured = len({row.get("point_key") for row in rows if row.get("status")})
    if measured < expected:
        detail = f"{measured} of {expected} points"
        return SuiteState(entry, "partial", path, detail, estimate, source)
    newest = _newest_per_point(rows)
    busy = sum(row_is_busy(row) for row in newest)
    if busy:
        detail = f"{busy} of {len(newest)} points under load"
        return SuiteState(entry, "under load", path, detail, estimate, source)
    return SuiteState(entry, "current", path, f"{len(newest)} points", estimate, source)


def run_wall_s(rows: list[dict[str, Any]]) -> float | None:
    """A run's wall time: from its first point's start to its last point's end (points
    run side by side, ``--jobs``, overlap: the earliest start need not be the first end's)."""
    ends = [
        (dt.datetime.fromisoformat(str(row["timestamp_utc"])), float(row.get("wall_s") or 0.0))
        for row in rows
        if row.get("timestamp_utc")
    ]
    if not ends:
        return None
    start = min(end - dt.timedelta(seconds=wall) for end, wall in ends)
    return (max(end for end, _ in ends) - start).total_seconds()


def missing_samples_s(rows: list[dict[str, Any]]) -> float:
    """Seconds a run would add to time every point at least MIN_SAMPLES times: rows from
    before that rule (one sample for a step slower than its time budget) are timed again."""
    extra = 0.0
    for row in rows:
        count, median = row.get("n_samples"), row.get("t_median_ms")
        if isinstance(count, int | float) and isinstance(median, int | float) and count >= 1:
            extra += max(0.0, MIN_SAMPLES - count) * median / 1e3
    return extra


def _runs(
    entry: Entry, out_dir: Path, *, any_seeds: bool = False
) -> list[tuple[Path, list[dict[str, Any]]]]:
    """The entry's result files in ``out_dir``, oldest first, with their rows."""
    found = []
    for path in run_files(out_dir, entry.suite, "cpu"):
        rows, _problems = read_rows(path)
        if rows and _matches(entry, rows, any_seeds):
            found.append((path, rows))
    return found


def _matches(entry: Entry, rows: list[dict[str, Any]], any_seeds: bool) -> bool:
    if any(row.get("mode") != entry.mode for row in rows):
        return False
    # A run of part of a grid (some models, some lengths) is neither the record's run nor
    # a measure of its time.
    argv = next((row.get("argv") for row in rows if row.get("argv")), None) or []
    if "--train" in argv or ("--lengths" in argv and not entry.lengths):
        return False
    if entry.lengths and any(row.get("seq_len") not in entry.lengths for row in rows):
        return False
    return any_seeds or seeds_of(rows) == entry.seeds


def seeds_of(rows: list[dict[str, Any]]) -> int:
    """How many seeds a run trains: its command's ``--seeds`` (a stopped run may not have
    reached its last seed), else the seeds its rows hold, else 1."""
    argv = next((row.get("argv") for row in rows if row.get("argv")), None) or []
    if "--seeds" in argv[:-1]:
        value = str(argv[argv.index("--seeds") + 1])
        if value.isdigit():
            return int(value)
    seeds = [int(row["seed"]) for row in rows if isinstance(row.get("seed"), int)]
    return max(seeds) + 1 if seeds else 1


def _machine(rows: list[dict[str, Any]]) -> str | None:
    models = {row.get("cpu_model") for row in rows}
    return models.pop() if len(models) == 1 else None


def _newest_per_point(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from suites.rows.newest import latest_rows

    return latest_rows(rows)


def new_points_s(rows: list[dict[str, Any]], planned: list[int]) -> tuple[int, float]:
    """(how many of the ``planned`` point lengths the run lacks, their estimated seconds):
    per length, the points beyond the run's count there, each at the mean ``wall_s`` of
    the run's points of that length, else of all its points (a point of a run with
    ``--jobs`` N counts a 1/N share of its wall)."""
    walls: dict[int, list[float]] = {}
    for row in _newest_per_point(rows):
        if isinstance(row.get("seq_len"), int) and isinstance(row.get("wall_s"), int | float):
            # A point run beside others (--jobs) holds the run's clock for a share of it.
            share = float(row["wall_s"]) / max(1, int(row.get("jobs") or 1))
            walls.setdefault(row["seq_len"], []).append(share)
    every = [w for found in walls.values() for w in found]
    overall = sum(every) / len(every) if every else 0.0
    count, seconds = 0, 0.0
    for length in sorted(set(planned)):
        had = walls.get(length, [])
        more = planned.count(length) - len(had)
        if more > 0:
            count += more
            seconds += more * (sum(had) / len(had) if had else overall)
    return count, seconds


def _estimate(
    entry: Entry, out_dir: Path, machine: str, planned_points: list[int] | None = None
) -> tuple[float, str]:
    """The wall time of the entry's newest whole run here, else on any machine, else the
    plan's figure; a run of another seed count is scaled to this one's seeds."""
    runs = _runs(entry, out_dir, any_seeds=True)
    for wanted in (machine, None):
        for path, rows in reversed(runs):
            if wanted is not None and _machine(rows) != wanted:
                continue
            expected = max(int(row.get("grid_points") or 0) for row in rows)
            if len({row.get("point_key") for row in rows}) < expected:
                continue
            wall = run_wall_s(rows)
            if wall:
                seeds = seeds_of(rows)
                where = "here" if wanted else f"on {_machine(rows) or 'mixed CPUs'}"
                scaled = f", x {entry.seeds}/{seeds} seeds" if seeds != entry.seeds else ""
                more = 0.0 if entry.one_sample else missing_samples_s(rows)
                topped = f", +{more:.0f} s for {MIN_SAMPLES} samples" if more >= 1 else ""
                new, new_s = new_points_s(rows, planned_points or [])
                total = (wall + more + new_s) * entry.seeds / seeds
                grown = (
                    f"; {new} points new since, +{new_s:.0f} s at their length's mean point"
                    if new > 0
                    else ""
                )
                return total, f"{path.name} ({where}{scaled}{topped}{grown})"
    return entry.estimate_s, "the plan's figure"
