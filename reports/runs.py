"""Which runs a report draws: by default, the newest complete run of each suite.

A *run* is the rows of one results file (``run_id``) taken with one thread count and one
OMP_WAIT_POLICY: a resumed file can hold rows of several (``--threads`` is part of a point,
so it never resumes another count's points), and their times must not share a line. A
file written before each run file held one grid may also mix grid modes; each mode is then
a run of its own.

- ``latest`` (the default): per suite, the newest complete run. A run is complete when it
  has a row for every point of its grid (rows record ``grid_points``); a run from before
  rows recorded that counts as complete when it has as many points as the largest such run
  of its suite. A run of some of a grid's models (the quality suite's ``--train``, which
  its command line records) is never complete: the grid has others. Where a suite has no
  complete run, its newest run is drawn and said to be incomplete.
- ``all``: every run (the newest row of each point, whichever run measured it).
- run ids: exactly those runs.

Each run also carries its ``staleness`` (suites.rows.staleness): "current" when its rows
measured the model code (reformer/, baselines/) as it is at HEAD, else how many model
commits came after it. The report prints it per run and under every section a stale run
feeds.

reports.sections.front_matter lists the runs a report drew beside the environment, so a
reader knows exactly which measurements each figure holds.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pandas as pd

from suites.rows.busy import row_is_busy
from suites.rows.staleness import Staleness, staleness

RUN_CHOICES = ("latest", "all")
DEFAULT_POLICY = "default"  # OMP_WAIT_POLICY unset: OpenMP's own (threads spin, then sleep)


def label_runs(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows with ``run`` (run id, threads, wait policy) and ``busy`` columns added.

    A failed point's row may lack ``num_threads`` (its child never reported it); it takes
    the count most rows of its file recorded.
    """
    if rows.empty:
        return rows.assign(run=pd.Series(dtype=object), busy=pd.Series(dtype=bool))
    run_id = rows["run_id"].astype(object).fillna(rows.get("source", "unknown")).astype(str)
    threads = rows["num_threads"].copy()
    typical = rows.groupby(run_id)["num_threads"].agg(
        lambda s: s.mode().iloc[0] if s.notna().any() else float("nan")
    )
    threads = threads.fillna(run_id.map(typical))
    policy = (
        rows["omp_wait_policy"].astype(object)
        if "omp_wait_policy" in rows
        else pd.Series(None, index=rows.index, dtype=object)
    ).fillna(DEFAULT_POLICY)
    policy = policy.astype(str)
    # A file written before a run file held one grid may mix grids (a --quick run resumed
    # by a default one): each grid of such a file is a run of its own.
    mode = (
        rows["mode"].astype(object) if "mode" in rows else pd.Series(None, index=rows.index)
    ).where(lambda m: m.notna(), None)
    mixed = mode.groupby(run_id).transform(lambda m: m.nunique(dropna=True) > 1)
    grid = [
        f" · {m} grid" if mix and m is not None else "" for m, mix in zip(mode, mixed, strict=True)
    ]
    label = [
        f"{r}{g} · {_threads(t)} · OMP_WAIT_POLICY={p}"
        for r, g, t, p in zip(run_id, grid, threads, policy, strict=True)
    ]
    busy = [row_is_busy(row) for row in rows[_load_columns(rows)].to_dict("records")]
    return rows.assign(run=label, run_threads=threads, run_policy=policy, busy=busy)


def _load_columns(rows: pd.DataFrame) -> list[str]:
    return [c for c in ("load_avg_1m", "n_cpus") if c in rows]


def _threads(value: Any) -> str:
    return "threads ?" if pd.isna(value) else f"{int(value)} threads"


def summarize_runs(rows: pd.DataFrame) -> pd.DataFrame:
    """One line per (suite, run): points, newest timestamp, whether it is complete, and
    ``staleness``: whether it measured the model code as it is at HEAD."""
    if rows.empty:
        return pd.DataFrame(columns=["suite", "run", "points", "newest", "complete", "staleness"])
    key = rows.get("point_key", pd.Series(None, index=rows.index, dtype=object))
    point = key.astype(object).where(key.notna(), rows.index.to_series().astype(str))
    grid = (
        rows["grid_points"] if "grid_points" in rows else pd.Series(float("nan"), index=rows.index)
    )
    argv = rows["argv"] if "argv" in rows else pd.Series(None, index=rows.index, dtype=object)
    keyed = rows.assign(_point=point, _some_models=argv.map(_selects_models))
    keyed = keyed.assign(_grid=pd.to_numeric(grid, errors="coerce"))
    table = (
        keyed.groupby(["suite", "run"], sort=False)
        .agg(
            points=("_point", "nunique"),
            newest=("timestamp", "max"),
            grid=("_grid", "max"),
            ok=("status", lambda s: int((s == "ok").sum())),
            busy=("busy", "sum"),
            threads=("run_threads", "first"),
            policy=("run_policy", "first"),
            oldest=("timestamp", "min"),
            git_sha=("git_sha", _shas),
            some_models=("_some_models", "any"),
        )
        .reset_index()
    )
    code = {name: run_staleness(part) for name, part in keyed.groupby(["suite", "run"], sort=False)}
    table["staleness"] = [code[(s, r)] for s, r in zip(table["suite"], table["run"], strict=True)]
    legacy_best = table[table["grid"].isna()].groupby("suite")["points"].max()
    table["complete"] = [
        not some and (points >= grid if pd.notna(grid) else points >= legacy_best.get(suite, 0))
        for suite, points, grid, some in zip(
            table["suite"], table["points"], table["grid"], table["some_models"], strict=True
        )
    ]
    return table.drop(columns="some_models")


def _selects_models(argv: object) -> bool:
    """Whether a row's command line (a list, or the JSON text the loader makes of one)
    picked some of its grid's models (``--train``)."""
    if isinstance(argv, str) and argv.startswith("["):
        try:
            argv = json.loads(argv)
        except json.JSONDecodeError:
            return False
    return isinstance(argv, list | tuple) and any(
        str(arg) == "--train" or str(arg).startswith("--train=") for arg in argv
    )


def run_staleness(rows: pd.DataFrame) -> Staleness:
    """Whether one run's rows measured the model code at HEAD (suites.rows.staleness)."""
    return staleness(rows["git_sha"].dropna().astype(str), rows["git_dirty"])


def _shas(values: pd.Series) -> str:
    shas = sorted({str(v)[:7] for v in values.dropna()})
    return ", ".join(shas) if shas else "?"


def select_runs(
    rows: pd.DataFrame, runs: str = "latest", run_ids: Sequence[str] = ()
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the rows of the runs drawn, the table of those runs). See the module docstring."""
    if runs not in RUN_CHOICES:
        raise ValueError(f"runs={runs!r} is unknown; allowed: {RUN_CHOICES} (or run ids)")
    rows = label_runs(rows)
    table = summarize_runs(rows)
    if run_ids:
        chosen = table[table["run"].str.split(" · ").str[0].isin(run_ids)]
    elif runs == "all":
        chosen = table
    else:
        chosen = (
            pd.concat([_newest(part) for _, part in table.groupby("suite", sort=False)])
            if not table.empty
            else table
        )
    keys = set(zip(chosen["suite"], chosen["run"], strict=True))
    drawn = rows[[(s, r) in keys for s, r in zip(rows["suite"], rows["run"], strict=True)]]
    return drawn, chosen.reset_index(drop=True)


def _newest(runs: pd.DataFrame) -> pd.DataFrame:
    complete = runs[runs["complete"]]
    pool = complete if not complete.empty else runs
    return pool.sort_values("newest", na_position="first").tail(1)
