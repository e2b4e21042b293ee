"""results/ci/history.jsonl: one row per tracked figure per CI run, append-only.

A row carries the figure's value and gate result, the baseline and tolerance it was held
to, and the provenance of the run: git sha and dirtiness, host, CPU, torch and Python
versions, the 1-minute load average (a loaded machine explains a noisy ratio) and the
pytest-benchmark JSON the ratios came from (a ratio's thread count is in its detail).
``python -m reports.build`` draws these rows as trend panels (reports/sections/ci_history.py). The
file is only ever appended to, with the torn-line safety of suites.rows.store.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from suites.ci.gates import SPECS, Outcome
from suites.harness.environment import environment
from suites.rows.store import RunFile, utc_now

SCHEMA_VERSION = 1
# Raw per-round times and step parameters stay in the benchmark JSON the row points to.
BULKY_DETAIL = ("numerator_times_s", "denominator_times_s", "params")
ENV_FIELDS = ("git_sha", "git_dirty", "host", "cpu_model", "n_cpus", "torch", "python")


def run_provenance() -> dict[str, Any]:
    """What every row of one run shares: environment and machine load."""
    env = environment("cpu")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {**{name: env[name] for name in ENV_FIELDS}, "load_avg_1m": load}


def history_rows(
    outcomes: list[Outcome],
    *,
    run_id: str,
    provenance: dict[str, Any],
    bench_json: str | None,
    command: str,
) -> list[dict[str, Any]]:
    stamp = utc_now()
    rows = []
    for outcome in outcomes:
        detail = {k: v for k, v in outcome.detail.items() if k not in BULKY_DETAIL}
        if isinstance(detail.get("points"), dict):  # JSON object keys must be strings
            detail["points"] = {str(k): v for k, v in detail["points"].items()}
        rows.append(
            {
                "schema_version": SCHEMA_VERSION,
                "run_id": run_id,
                "timestamp_utc": stamp,
                "figure": outcome.figure,
                "kind": outcome.kind,
                "value": outcome.value,
                "unit": outcome.unit,
                "status": outcome.status,
                "limit": outcome.limit,
                **_numeric_limits(outcome),
                "baseline": outcome.baseline,
                "tolerance": outcome.tolerance,
                "detail": detail,
                "message": outcome.message,
                "bench_json": bench_json if outcome.kind == "ratio" else None,
                "command": command,
                **provenance,
            }
        )
    return rows


def _numeric_limits(outcome: Outcome) -> dict[str, float | None]:
    """The gate's bounds as numbers, for trend plots: fixed limits, or baseline x (1 + tol)."""
    if outcome.kind == "ratio":
        upper = (
            None
            if outcome.baseline is None or outcome.tolerance is None
            else outcome.baseline * (1 + outcome.tolerance)
        )
        return {"limit_lower": None, "limit_upper": upper}
    figure = SPECS[outcome.figure]
    return {"limit_lower": figure.lower, "limit_upper": figure.upper}


def append_history(path: Path, rows: list[dict[str, Any]]) -> None:
    """Append rows to the history file (created if missing); never rewrites it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    history = RunFile(path, [], [])
    for row in rows:
        history.append(row)
