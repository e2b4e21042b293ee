"""Append-only result files: one JSON line per measured point (docs/results.md).

Layout: ``<out>/<suite>_<device>_<YYYYmmddTHHMMSSZ>.jsonl``, one file per run; the stem is
the run id. A file is only ever appended to: never rewritten, truncated or deleted.

A plain run writes under ``runs/`` (DEFAULT_OUT, ignored by git), never into the committed
record under ``results/`` (COMMITTED_OUT), which only ``--out results`` appends to.

Resume (the default): a run continues the newest file of its suite and device in its
folder, and points whose key already has an ``ok`` row there are not measured again.
``--fresh`` opens a new file instead (the old ones stay). A line that does not parse (a
run killed mid-write, a hand edit) is reported with its file and line number and skipped;
it is never fatal and never removed. Before appending to a file whose last line lacks its
newline, a newline is written first, so the torn line stays one malformed line and the new
row stays intact.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from suites.names import current_names
from suites.spec import ROW_CONFIG_FIELDS

SCHEMA_VERSION = 1
# Where a plain run writes (ignored by git), and the committed record of measurements.
DEFAULT_OUT = Path("runs")
COMMITTED_OUT = Path("results")
STATUSES = ("ok", "oom", "timeout", "error", "skipped")

# The row's fields, in groups: which run, the environment, then what was measured.
IDENTITY_FIELDS = ("schema_version", "run_id", "timestamp_utc", "git_sha", "git_dirty")
ENVIRONMENT_FIELDS = (
    "host",
    "cpu_model",
    "n_cpus",
    "gpu_name",
    "driver",
    "torch",
    "python",
    "cuda",
)
MEASURED_FIELDS = (
    # timing
    "t_median_ms",
    "t_iqr_ms",
    "n_samples",
    # memory (MiB = 2**20 bytes)
    "peak_mb",
    "reserved_mb",
    "nvml_peak_mb",
    "saved_mb",
    "memory_method",
    # derived
    "tokens_per_s",
    "flops",
    "tflops_per_s",
    # status
    "status",
    "error",
    "wall_s",
)
ROW_FIELDS: tuple[str, ...] = (
    *IDENTITY_FIELDS,
    "suite",
    # config: the harness fields and ReformerConfig's (suites.spec)
    *ROW_CONFIG_FIELDS,
    *ENVIRONMENT_FIELDS,
    *MEASURED_FIELDS,
)
# Harness columns beyond the measurement itself: which implementation ran (peers), the
# stable key resume matches on, the memory cap the child ran under, how FLOPs were had,
# and the machine's 1-minute load average when the point ended and OMP_WAIT_POLICY (times
# taken on a busy shared machine are not comparable with those taken on an idle one);
# which backend ran our LSH attention (suites.backend), the peak FLOP/s and MFU
# (suites.efficiency); the grid's mode and its number of points (a run with a row per point
# is complete).
EXTRA_FIELDS: tuple[str, ...] = (
    "point_key",
    "impl",
    "impl_version",
    "max_memory_gb",
    "memory_cap",
    "flops_method",
    "timeout_s",
    "load_avg_1m",
    "omp_wait_policy",
    "backend",
    "peak_tflops",
    "peak_source",
    "mfu",
    "mode",
    "grid_points",
)


def utc_stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_rows(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows of one results file and a note for every line that is not a JSON object.

    Names written under an older spelling are read as today's (suites.names)."""
    rows, problems = [], []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.append(f"{path}:{number}: malformed line skipped ({exc.msg})")
                continue
            if not isinstance(row, dict):
                problems.append(f"{path}:{number}: malformed line skipped (not a JSON object)")
                continue
            rows.append(current_names(row))
    return rows, problems


def run_files(out_dir: Path, suite: str, device: str) -> list[Path]:
    """Result files of one suite and device, oldest first (the stamp sorts by time)."""
    return sorted(Path(out_dir).glob(f"{suite}_{device}_*.jsonl"), key=_file_order)


def _file_order(path: Path) -> tuple[str, int]:
    """Stamp, then the ``-N`` suffix a second run started in the same second gets."""
    stamp, _, counter = path.stem.partition("-")
    return stamp, int(counter) if counter.isdigit() else 0


class RunFile:
    """The results file of one run: existing rows (when resuming) plus appends."""

    def __init__(self, path: Path, rows: list[dict[str, Any]], problems: list[str]) -> None:
        self.path = path
        self.run_id = path.stem
        self.rows = rows
        self.problems = problems
        # Keys of the points the sweep that opened this file covers (None: not a sweep).
        self.planned: set[str] | None = None

    @classmethod
    def open(cls, out_dir: Path, suite: str, device: str, *, fresh: bool = False) -> RunFile:
        """Continue the newest file of (suite, device), or start a new one if fresh/none."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        existing = run_files(out_dir, suite, device)
        if existing and not fresh:
            rows, problems = read_rows(existing[-1])
            return cls(existing[-1], rows, problems)
        return cls(_new_path(out_dir, f"{suite}_{device}_{utc_stamp()}"), [], [])

    def ok_keys(self) -> set[str]:
        return {
            row["point_key"]
            for row in self.rows
            if row.get("status") == "ok" and isinstance(row.get("point_key"), str)
        }

    def append(self, row: dict[str, Any]) -> None:
        line = json.dumps(_jsonable(row), sort_keys=False)
        with open(self.path, "a+b") as handle:
            handle.seek(0, 2)
            if handle.tell() > 0:
                handle.seek(-1, 2)
                if handle.read(1) != b"\n":
                    handle.write(b"\n")
            handle.write(line.encode("utf-8") + b"\n")
            handle.flush()
        self.rows.append(row)


def _new_path(out_dir: Path, stem: str) -> Path:
    """A name no file has yet; created empty at once so two runs cannot share it."""
    for attempt in range(1000):
        path = out_dir / (f"{stem}.jsonl" if attempt == 0 else f"{stem}-{attempt}.jsonl")
        try:
            with open(path, "x", encoding="utf-8"):
                return path
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a new results file for {stem} in {out_dir}")


def _jsonable(value: Any) -> Any:
    """Non-finite floats become null and tuples lists, so every line is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
