"""Read result rows (docs/results.md) from every ``*.jsonl`` file under a folder.

Results files are append-only and may hold the same sweep point several times (a resumed
run re-measures failed points, a later run re-measures everything). The report shows one
row per point: the newest. A malformed line is logged with its file and line number and
skipped, never fatal. ``ci/history.jsonl`` (the CI perf history, a different row shape)
is read separately by :func:`load_history`.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import pandas as pd

from suites.rows.names import hardware_name
from suites.rows.newest import newest_per_point
from suites.rows.row_types import INT_FIELDS, NUMBER_FIELDS
from suites.rows.schema import (
    ENVIRONMENT_FIELDS,
    IDENTITY_FIELDS,
    MEASURED_FIELDS,
    ROW_CONFIG_FIELDS,
    STATUSES,
)
from suites.rows.store import read_rows

log = logging.getLogger("reports")

HISTORY_FILE = "history.jsonl"

# Configuration columns (harness and ReformerConfig fields, suites.harness.spec); together with
# unknown extras they identify a point.
CONFIG_COLUMNS = ROW_CONFIG_FIELDS
# Extra point columns of some suites: peers (impl), quality, and scale (autocast).
EXTRA_COLUMNS = ("impl", "task", "train_attention", "eval_attention", "step", "autocast")
# Columns that describe a measurement or its provenance, not which point was measured.
MEASURED_COLUMNS = (
    *IDENTITY_FIELDS,
    *ENVIRONMENT_FIELDS,
    *MEASURED_FIELDS,
    "impl_version",
    "accuracy",
    "bits_per_byte",
    "loss",
    "command",
    "argv",
    "peak_tflops",
    "peak_source",
    "mfu",
)
# Every field the row reader checks as a number (suites.rows.row_types): coerced, so a column
# of ints and nulls is numeric in the frame.
NUMERIC_COLUMNS = (*INT_FIELDS, *NUMBER_FIELDS)
_MEASURED_SUFFIXES = ("_ms", "_mib", "_per_s", "_s")
REQUIRED = ("suite", "model", "status")


def read_jsonl(path: Path) -> list[dict]:
    """Parse one JSON-lines file (suites.rows.store.read_rows); log each line it skipped."""
    rows, problems = read_rows(path)
    for problem in problems:
        log.warning("%s", problem)
    return rows


# Attention-probe files (suites.tools.attention_probe): reports.sections.probe reads them.
PROBE_PREFIX = "probe_"


def load_rows(results_dir: str | Path) -> pd.DataFrame:
    """Every result row under ``results_dir`` (recursive), with ``hardware`` and ``source``.

    Rows lacking suite, model or status are logged and dropped. Lists in cells (a factorised
    ``n_buckets``) become JSON strings so rows can be grouped.
    """
    root = Path(results_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"--results {root} is not a folder of *.jsonl result files")
    rows = []
    for path in sorted(root.rglob("*.jsonl")):
        if path.name == HISTORY_FILE or path.name.startswith(PROBE_PREFIX):
            continue  # CI history and attention probes are read by their own sections
        for row in read_jsonl(path):
            missing = [key for key in REQUIRED if row.get(key) in (None, "")]
            if missing:
                log.warning("%s: skipped a row without %s", path, ", ".join(missing))
                continue
            row["source"] = str(path.relative_to(root))
            rows.append({k: _hashable(v) for k, v in row.items()})
    return normalise(pd.DataFrame(rows))


def normalise(frame: pd.DataFrame) -> pd.DataFrame:
    """Add absent schema columns, coerce numbers and timestamps, derive ``hardware``."""
    frame = frame.copy()
    for column in (*CONFIG_COLUMNS, *EXTRA_COLUMNS, *MEASURED_COLUMNS, "suite"):
        if column not in frame.columns:
            frame[column] = None
    for column in NUMERIC_COLUMNS:
        if column in frame.columns:
            frame[column] = pd.to_numeric(frame[column], errors="coerce")
    frame["timestamp"] = pd.to_datetime(
        frame["timestamp_utc"], utc=True, errors="coerce", format="ISO8601"
    )
    # Rows that do not say which phase they measured still get drawn, under "n/a".
    frame["phase"] = frame["phase"].fillna("n/a")
    unknown = ~frame["status"].isin(STATUSES)
    if unknown.any():
        log.warning("%d rows have a status outside %s; counted as error", unknown.sum(), STATUSES)
        frame.loc[unknown, "status"] = "error"
    frame["hardware"] = [hardware_name(row) for row in frame.to_dict("records")]
    frame["hardware_slug"] = frame["hardware"].map(slugify)
    return frame


def slugify(text: str, max_len: int = 40) -> str:
    """'Intel(R) Xeon(R) CPU @ 2.20GHz' -> 'intel-xeon-cpu-2-20ghz'."""
    text = re.sub(r"\((r|tm)\)", "", text.lower())
    slug = re.sub(r"[^a-z0-9]+", "-", text).strip("-")
    return slug[:max_len].rstrip("-") or "unknown"


def point_columns(frame: pd.DataFrame) -> list[str]:
    """Columns that say which point a row measured: config plus unknown extras."""
    derived = {"source", "timestamp", "hardware"}
    return [
        column
        for column in frame.columns
        if column not in MEASURED_COLUMNS
        and column not in derived
        and (not column.endswith(_MEASURED_SUFFIXES) or "budget" in column)
    ]


def latest_points(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per measured point: the newest by timestamp (file order breaks ties).

    A row's point is its harness ``point_key`` where it has one (the key resume matches
    on), else its suite, hardware and :func:`point_columns` values.
    """
    if frame.empty:
        return frame
    keys = [c for c in point_columns(frame) if c != "point_key"]
    fallback = frame[keys].map(str).agg("|".join, axis=1)
    if "point_key" in frame.columns:
        harness = (
            frame["suite"].astype(str)
            + "|"
            + frame["hardware_slug"]
            + "|"
            + frame["point_key"].astype(str)
        )
        point = harness.where(frame["point_key"].notna(), fallback)
    else:
        point = fallback
    stamps = [None if pd.isna(stamp) else stamp for stamp in frame["timestamp"]]
    keep = newest_per_point(list(point), stamps)
    return frame.iloc[keep].reset_index(drop=True)


def load_history(results_dir: str | Path) -> pd.DataFrame:
    """CI perf history rows from ``<results>/**/history.jsonl``; empty if none."""
    rows: list[dict[str, Any]] = []
    for path in sorted(Path(results_dir).rglob(HISTORY_FILE)):
        rows.extend({k: _hashable(v) for k, v in row.items()} for row in read_jsonl(path))
    frame = pd.DataFrame(rows)
    if not frame.empty and "timestamp_utc" in frame.columns:
        frame["timestamp"] = pd.to_datetime(
            frame["timestamp_utc"], utc=True, errors="coerce", format="ISO8601"
        )
    return frame


def _hashable(value: object) -> object:
    if isinstance(value, list | dict):
        return json.dumps(value, sort_keys=True)
    return value
