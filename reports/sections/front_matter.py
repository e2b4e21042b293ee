"""The front matter: the environment, the runs drawn, points per suite and status, errors.

What a reader needs before any figure: the hardware and code the rows come from, which
runs each suite is drawn from, and how many points were measured, failed or ran under load.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from reports.load import STATUSES
from reports.render.document import Note, Table, fmt
from reports.sections.measured import BUSY_NOTE
from suites.rows.busy import RULE, row_is_busy
from suites.rows.staleness import Staleness


def _values(series: pd.Series, limit: int = 4) -> str:
    values = [str(v) for v in dict.fromkeys(series.dropna().tolist()) if str(v) != ""]
    if not values:
        return "n/a"
    more = f" (+{len(values) - limit} more)" if len(values) > limit else ""
    return ", ".join(values[:limit]) + more


def environment_table(rows: pd.DataFrame, built: dict[str, str]) -> Table:
    cuda = rows[rows["device"].astype(str).str.startswith("cuda")]
    dirty = rows.loc[rows["git_dirty"].isin([True, "true", "True"]), "git_sha"]
    shas = _values(rows["git_sha"].astype(str).str[:10].where(rows["git_sha"].notna()))
    stamps = rows["timestamp"].dropna()
    facts = {
        "device": _values(rows["device"]),
        "accelerator": _values(cuda["gpu_name"]) if not cuda.empty else "none (CPU)",
        "driver": _values(cuda["driver"]) if not cuda.empty else "n/a",
        "CUDA": _values(cuda["cuda"]) if not cuda.empty else "n/a",
        "CPU": f"{_values(rows['cpu_model'])} ({_values(rows['n_cpus'].map(fmt))} CPUs)",
        "threads": _values(rows["num_threads"].map(fmt)),
        "host": _values(rows["host"]),
        "torch": _values(rows["torch"]),
        "python": _values(rows["python"]),
        "results git sha": shas + (" (some from a dirty tree)" if not dirty.empty else ""),
        "results dated": (
            f"{stamps.min():%Y-%m-%d %H:%M} to {stamps.max():%Y-%m-%d %H:%M} UTC"
            if not stamps.empty
            else "n/a"
        ),
        "memory method": _values(rows["memory_method"]),
        **built,
    }
    frame = pd.DataFrame({"value": list(facts.values())}, index=list(facts))
    return Table(frame, "Environment, from the result rows.")


def counts_table(rows: pd.DataFrame, raw_rows: int) -> Table:
    counts = pd.crosstab(rows["suite"], rows["status"]).reindex(columns=STATUSES, fill_value=0)
    counts.insert(0, "points", counts.sum(axis=1))
    measured = rows[rows["status"] != "skipped"]
    busy = [row_is_busy(r) for r in measured.to_dict("records")]
    counts["under load"] = (
        measured[busy].groupby("suite").size().reindex(counts.index, fill_value=0)
    )
    counts.loc["all"] = counts.sum()
    superseded = raw_rows - len(rows)
    return Table(
        counts.astype(int).astype(str),
        f"Measured points per suite and status (newest row per point; {superseded} "
        f"older rows of re-measured points not counted). Under load: {BUSY_NOTE}",
    )


def errors_table(rows: pd.DataFrame, limit: int = 10) -> Table | None:
    failed = rows[rows["status"].isin(["error", "timeout"])]
    if failed.empty:
        return None
    # Messages may carry terminal colour codes and tracebacks' newlines: one clean line each.
    message = (
        failed["error"]
        .fillna("(no message)")
        .astype(str)
        .str.replace(r"\x1b\[[0-9;]*[A-Za-z]", "", regex=True)
        .str.replace(r"\s+", " ", regex=True)
        .str.slice(0, 160)
    )
    table = (
        failed.assign(message=message)
        .groupby(["suite", "status", "message"])
        .agg(points=("model", "size"), models=("model", lambda m: _values(m, 3)))
        .reset_index()
        .sort_values("points", ascending=False)
        .head(limit)
    )
    return Table(table, "Error and timeout messages (most frequent first).", index=False)


def runs_table(chosen: pd.DataFrame) -> pd.DataFrame:
    """The runs drawn, as text: run id, threads, wait policy, points, load, dates, code,
    and whether that code is still the model code at HEAD ("code since")."""

    def dated(row: pd.Series) -> str:
        if pd.isna(row["oldest"]):
            return "?"
        return f"{row['oldest']:%Y-%m-%d %H:%M} to {row['newest']:%H:%M} UTC"

    return pd.DataFrame(
        {
            "suite": chosen["suite"],
            "run": chosen["run"].str.split(" · ").str[0],
            "threads": chosen["threads"].map(lambda t: "?" if pd.isna(t) else str(int(t))),
            "OMP_WAIT_POLICY": chosen["policy"],
            "points (ok)": [
                f"{p} ({o})" for p, o in zip(chosen["points"], chosen["ok"], strict=True)
            ],
            "complete": chosen["complete"].map({True: "yes", False: "no"}),
            "under load": chosen["busy"].astype(int).astype(str),
            "dated": chosen.apply(dated, axis=1),
            "git sha": chosen["git_sha"],
            "code since": chosen["staleness"].map(lambda code: code.label()),
        }
    )


def runs_caption(runs: str, run_ids: Sequence[str], not_drawn: int) -> str:
    how = {
        "latest": "the newest complete run of each suite (one results file, one thread "
        "count, one OMP_WAIT_POLICY)",
        "all": "every run (--runs all), newest row per point",
    }[runs]
    if run_ids:
        how = "the runs named by --run-id"
    other = (
        f" {not_drawn} rows of other runs are not drawn (--runs all or --run-id ID draws them)."
        if not_drawn
        else ""
    )
    return (
        f"Runs drawn: {how}. 'under load': points measured with the {RULE}, whose "
        f"times are not comparable with an idle run's. 'code since': current when the "
        "run measured the model code (reformer/, baselines/) as it is in the commit this "
        "report was built at, else the number of commits to that code since the run's "
        "git sha (the run describes its own sha's code, not this one); 'dirty tree' when "
        "a row was measured from uncommitted changes, 'unknown' where this clone's "
        f"history cannot say.{other}"
    )


def stale_note(chosen: pd.DataFrame, suites: Sequence[str]) -> Note | None:
    """A line for under a section's title naming each drawn run of ``suites`` that did not
    measure the model code at HEAD; None when every such run did (or none was drawn)."""
    if chosen.empty or "staleness" not in chosen:
        return None
    parts = []
    for suite, run, code in zip(chosen["suite"], chosen["run"], chosen["staleness"], strict=True):
        if suite not in suites or code.current:
            continue
        sha = f" at {code.sha[:7]}" if code.sha else ""
        parts.append(f"{run.split(' · ')[0]}{sha} ({_since(code)})")
    if not parts:
        return None
    return Note(
        "Not the code as it now stands: drawn from "
        + "; ".join(parts)
        + ". These numbers describe the model code of that commit."
    )


def _since(code: Staleness) -> str:
    if code.state == "stale":
        return f"{code.label()} before this code"
    if code.state == "dirty":
        return "measured from uncommitted changes"
    return "whether the model code changed since is unknown in this clone"
