"""CI performance history: one trend panel per tracked figure.

Reads ``results/ci/history.jsonl`` (written by ``python -m suites.ci``): one row per tracked
figure per CI run with ``figure`` (or ``metric`` / ``name``) and ``value``, and optionally
``unit``, ``status`` (pass/fail), ``limit`` (text such as "<= 1.15" for deterministic
gates), ``baseline`` and relative ``tolerance`` (ratio gates), ``git_sha``, ``host``,
``command`` and ``timestamp_utc``. Runs are drawn in time order, coloured by host: the
baseline dashed with its tolerance band shaded, fixed limits dash-dotted, failed runs ringed.
"""

from __future__ import annotations

import math
import re

import pandas as pd

from reports.context import ReportContext
from reports.render.document import Block, Note, Paragraph, Table, fmt
from reports.render.plotting import Panel, draw_panels

NAME_COLUMNS = ("figure", "metric", "name")
TREND_COLUMNS = 3


def tidy_history(history: pd.DataFrame) -> pd.DataFrame:
    """History rows with a ``figure`` name and numeric ``value``, in time order."""
    name = next((c for c in NAME_COLUMNS if c in history.columns), None)
    if history.empty or name is None or "value" not in history.columns:
        return pd.DataFrame()
    frame = history.assign(
        figure=history[name].astype(str), value=pd.to_numeric(history["value"], errors="coerce")
    )
    for column in ("baseline", "tolerance"):
        frame[column] = pd.to_numeric(frame.get(column), errors="coerce")
    for column in ("host", "git_sha", "unit", "status", "limit", "command"):
        if column not in frame.columns:
            frame[column] = None
    frame["host"] = frame["host"].fillna("unknown host").astype(str)
    frame = frame.dropna(subset=["value"]).reset_index(drop=True)
    if "timestamp" in frame.columns:
        frame = frame.sort_values("timestamp", kind="stable", na_position="first")
    return frame.reset_index(drop=True)


def build_history(ctx: ReportContext) -> list[Block] | None:
    history = tidy_history(ctx.history)
    if history.empty and not ctx.history.empty:
        return [
            Note(
                "history.jsonl has rows but none with a figure name and a numeric value "
                f"(expected one of {', '.join(NAME_COLUMNS)}, and value)."
            )
        ]
    if history.empty:
        return None
    history = history.assign(run=history.groupby("figure").cumcount() + 1)
    panels = []
    for figure_name, part in history.groupby("figure", sort=True):
        unit = part["unit"].dropna().astype(str)
        panels.append(
            Panel(
                data=part,
                x="run",
                y="value",
                hue="host",
                title=figure_name,
                logx=None,
                logy=False,
                xlabel="CI run, oldest first (commit)",
                ylabel=unit.iloc[-1] if not unit.empty else "value",
                annotate=_baseline(part),
            )
        )
    grid = [panels[i : i + TREND_COLUMNS] for i in range(0, len(panels), TREND_COLUMNS)]
    latest = history.groupby("figure").last()
    table = pd.DataFrame(
        {
            "latest": latest["value"].map(fmt),
            "unit": latest["unit"].fillna(""),
            "status": latest["status"].fillna(""),
            "limit": latest["limit"].fillna(""),
            "baseline": latest["baseline"].map(fmt),
            "runs": history.groupby("figure").size(),
            "git_sha": latest["git_sha"].fillna("").astype(str).str[:10],
        }
    )
    recorded = history["command"].dropna().astype(str).unique().tolist()[-3:]
    return [
        Paragraph("Tracked CI figures over time (deterministic gates and same-run ratios)."),
        ctx.save(
            draw_panels(grid, ctx.palette),
            "ci_history",
            "CI performance gates over time",
            "CI perf history: dashed = committed baseline, grey band = tolerance, "
            "red dash-dot = fixed limit, red ring = a failed gate.",
            (*(recorded or ["python -m suites.ci"]), ctx.build_command),
        ),
        Table(table, "Latest value of each tracked figure."),
    ]


def _baseline(part: pd.DataFrame):
    """Baseline, tolerance band, fixed limits and failed runs of one figure's panel."""
    baseline = part["baseline"].dropna()
    tolerance = part["tolerance"].dropna()
    runs = part.drop_duplicates("run")
    limits = part["limit"].dropna().astype(str)
    failed = part[part["status"] == "fail"]

    def annotate(ax) -> None:
        if len(runs) <= 12:  # short histories: label each run by its commit
            ax.set_xticks(
                runs["run"],
                runs["git_sha"].fillna("?").astype(str).str[:7],
                rotation=30,
                ha="right",
            )
        if not limits.empty:
            for level in re.findall(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", limits.iloc[-1]):
                ax.axhline(float(level), color="tab:red", linestyle="-.", linewidth=0.8)
        ax.plot(
            failed["run"],
            failed["value"],
            linestyle="none",
            marker="o",
            markersize=9,
            markerfacecolor="none",
            markeredgecolor="tab:red",
            zorder=6,
        )
        if baseline.empty:
            return
        level = float(baseline.iloc[-1])
        ax.axhline(level, color="0.3", linestyle="--", linewidth=0.8)
        if not tolerance.empty and math.isfinite(tolerance.iloc[-1]):
            band = abs(level) * float(tolerance.iloc[-1])
            ax.axhspan(level - band, level + band, color="0.85", zorder=0)

    return annotate
