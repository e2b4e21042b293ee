"""CI performance history: one trend panel per tracked figure.

Reads ``results/ci/history.jsonl`` (written by ``python -m suites.ci``): one row per tracked
figure per CI run with ``figure`` (or ``metric`` / ``name``) and ``value``, and optionally
``unit``, ``status`` (pass/fail), ``limit`` (text such as "<= 1.15" for deterministic
gates), ``baseline`` and relative ``tolerance`` (ratio gates), ``git_sha``, ``host``,
``command``, ``cpu_model`` and ``timestamp_utc``. Runs are drawn in time order, one series
per machine kind (the CPU model; a ratio of two kernels depends on it), failed runs ringed.

The limits drawn are the gates as they stand, not as each run saw them: a ratio gate's
from ``<results>/ci/baseline.json`` (one baseline per machine kind, failing above
baseline x (1 + tolerance)), drawn dashed in its kind's colour with the tolerance band
shaded; a deterministic gate's, the same on every kind, from its newest row, dash-dotted.
A kind without a baseline for a ratio figure is not gated on it, and the table says so.
The file is read as JSON here, not through suites.ci: reports import only suites.rows.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from reports.context import ReportContext
from reports.render.document import Block, Note, Paragraph, Table, fmt
from reports.render.palette import Palette
from reports.render.plotting import Panel, draw_panels
from suites.rows.names import hardware_name

NAME_COLUMNS = ("figure", "metric", "name")
TREND_COLUMNS = 3
BASELINE_FILE = Path("ci") / "baseline.json"
BASELINE_SCHEMA = 2


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
    for column in ("host", "git_sha", "unit", "status", "limit", "command", "kind"):
        if column not in frame.columns:
            frame[column] = None
    frame["host"] = frame["host"].fillna("unknown host").astype(str)
    frame["machine"] = [hardware_name(row) for row in frame.to_dict("records")]
    frame = frame.dropna(subset=["value"]).reset_index(drop=True)
    if "timestamp" in frame.columns:
        frame = frame.sort_values("timestamp", kind="stable", na_position="first")
    return frame.reset_index(drop=True)


@dataclass(frozen=True)
class Gates:
    """The ratio gates as they stand: baseline ratios per machine kind and the tolerance."""

    tolerance: float | None
    ratios: dict[str, dict[str, float]]  # machine kind -> figure -> baseline ratio
    problem: str = ""  # why the file could not be read, for the report to say

    def limit(self, machine: str, figure: str) -> float | None:
        ratio = self.ratios.get(machine, {}).get(figure)
        if ratio is None or self.tolerance is None:
            return None
        return ratio * (1 + self.tolerance)


def load_gates(results: Path) -> Gates:
    """``<results>/ci/baseline.json`` (schema 2: {"tolerance", "machines": {kind:
    {"figures": {figure: {"ratio"}}}}}); empty, with the reason, when absent or unreadable."""
    path = results / BASELINE_FILE
    if not path.is_file():
        return Gates(None, {}, f"no {path}")
    try:
        raw: Any = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return Gates(None, {}, f"{path} does not parse ({exc})")
    if not isinstance(raw, dict) or raw.get("schema_version") != BASELINE_SCHEMA:
        found = raw.get("schema_version") if isinstance(raw, dict) else None
        return Gates(None, {}, f"{path}: schema_version={found!r}, expected {BASELINE_SCHEMA}")
    tolerance = raw.get("tolerance")
    valid = isinstance(tolerance, int | float) and 0 < tolerance < 1
    ratios: dict[str, dict[str, float]] = {}
    for machine, entry in (raw.get("machines") or {}).items():
        figures = entry.get("figures", {}) if isinstance(entry, dict) else {}
        ratios[str(machine)] = {
            str(name): float(figure["ratio"])
            for name, figure in figures.items()
            if isinstance(figure, dict) and isinstance(figure.get("ratio"), int | float)
        }
    return Gates(float(tolerance) if valid and tolerance is not None else None, ratios)


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
    gates = load_gates(Path(ctx.results_arg))
    history = history.assign(run=history.groupby("figure").cumcount() + 1)
    machines = sorted(set(history["machine"]) | set(gates.ratios))
    palette = Palette.distinct(machines)  # machine kinds, not models: colours of their own
    panels = []
    for figure_name, part in history.groupby("figure", sort=True):
        unit = part["unit"].dropna().astype(str)
        panels.append(
            Panel(
                data=part,
                x="run",
                y="value",
                hue="machine",
                title=figure_name,
                logx=None,
                logy=False,
                xlabel="CI run, oldest first (commit)",
                ylabel=unit.iloc[-1] if not unit.empty else "value",
                annotate=_limits(part, str(figure_name), gates, palette),
            )
        )
    grid = [panels[i : i + TREND_COLUMNS] for i in range(0, len(panels), TREND_COLUMNS)]
    recorded = history["command"].dropna().astype(str).unique().tolist()[-3:]
    blocks: list[Block] = [
        Paragraph(
            "Tracked CI figures over time (deterministic gates and same-run ratios), one "
            "series per machine kind. The limits are today's gates: a ratio gate fails "
            f"above its kind's baseline x {_factor(gates)} ({BASELINE_FILE} under the "
            "results folder), a deterministic gate at the same limit on every kind."
            + (f" Ratio gates not drawn: {gates.problem}." if gates.problem else "")
        ),
        ctx.save(
            draw_panels(grid, palette),
            "ci_history",
            "CI performance gates over time, per machine kind",
            "CI perf history: dashed = a kind's current baseline (its colour), grey band "
            "= tolerance, red dash-dot = a deterministic gate's limit, red ring = a failed "
            "gate.",
            (*(recorded or ["python -m suites.ci"]), ctx.build_command),
        ),
        Table(
            gates_table(history, gates, machines),
            "The current gates per machine kind, with the newest CI run's value on that "
            "kind. A kind without a baseline for a ratio figure is not gated on it "
            "(`python -m suites.ci --update-baseline` on that kind measures one).",
            index=False,
        ),
    ]
    return blocks


def gates_table(history: pd.DataFrame, gates: Gates, machines: list[str]) -> pd.DataFrame:
    """One line per figure and machine kind: the gate as it stands and the newest value."""
    lines = []
    for figure_name, part in history.groupby("figure", sort=True):
        ratio = (
            (part["kind"] == "ratio").any() if "kind" in part else part["baseline"].notna().any()
        )
        for machine in machines:
            mine = part[part["machine"] == machine]
            if mine.empty and not (ratio and gates.limit(machine, str(figure_name))):
                continue
            newest = mine.iloc[-1] if not mine.empty else None
            lines.append(
                {
                    "figure": figure_name,
                    "machine kind": machine,
                    "gate": _gate(part, str(figure_name), machine, gates, bool(ratio)),
                    "newest value": fmt(newest["value"]) if newest is not None else "",
                    "status": str(newest["status"] or "") if newest is not None else "",
                    "git sha": str(newest["git_sha"] or "")[:7] if newest is not None else "",
                    "runs": str(len(mine)),
                }
            )
    return pd.DataFrame(lines)


def _gate(part: pd.DataFrame, figure: str, machine: str, gates: Gates, ratio: bool) -> str:
    if ratio:
        limit = gates.limit(machine, figure)
        if limit is None:
            return "not gated: no baseline on this kind"
        base = gates.ratios[machine][figure]
        return f"<= {fmt(limit)} (baseline {fmt(base)} x {_factor(gates)})"
    limits = part["limit"].dropna().astype(str)
    return limits.iloc[-1] if not limits.empty else ""


def _is_ratio(part: pd.DataFrame) -> bool:
    """A ratio gate: rows say so (``kind``), or, before rows said, carry a baseline."""
    return bool((part["kind"] == "ratio").any() or part["baseline"].notna().any())


def _factor(gates: Gates) -> str:
    return "(1 + tolerance)" if gates.tolerance is None else fmt(1 + gates.tolerance)


def _limits(part: pd.DataFrame, figure: str, gates: Gates, palette: Palette):
    """Each kind's current baseline and band, a deterministic gate's limit, failed runs."""
    runs = part.drop_duplicates("run")
    limits = part["limit"].dropna().astype(str)
    failed = part[part["status"] == "fail"]
    ratio = _is_ratio(part)

    def annotate(ax) -> None:
        if len(runs) <= 12:  # short histories: label each run by its commit
            ax.set_xticks(
                runs["run"],
                runs["git_sha"].fillna("?").astype(str).str[:7],
                rotation=30,
                ha="right",
            )
        if not ratio and not limits.empty:
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
        for machine, colour in palette.colours.items():
            base = gates.ratios.get(machine, {}).get(figure)
            if base is None:
                continue
            ax.axhline(base, color=colour, linestyle="--", linewidth=0.8)
            if gates.tolerance is not None and math.isfinite(gates.tolerance):
                band = abs(base) * gates.tolerance
                ax.axhspan(base - band, base + band, color="0.85", alpha=0.5, zorder=0)

    return annotate
