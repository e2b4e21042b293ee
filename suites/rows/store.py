"""Append-only result files: one JSON line per measured point (docs/results.md).

Layout: ``<out>/<suite>_<device>_<YYYYmmddTHHMMSSZ>.jsonl``, one file per run; the stem is
the run id. A file is only ever appended to: never rewritten, truncated or deleted.

A plain run writes under ``runs/`` (DEFAULT_OUT, ignored by git), never into the committed
record under ``results/`` (COMMITTED_OUT), which only ``--out results`` appends to.

Resume (the default): a run continues the newest file of its suite and device in its
folder that holds the same grid (mode and ``grid_id``, a hash of the grid's point keys),
and points whose key already has an ``ok`` row there are not measured again. Another grid
(``--quick`` after a default run, other ``--threads``) starts its own file, so a file never
mixes grids.
``--fresh`` opens a new file instead (the old ones stay). A line that does not parse (a
run killed mid-write, a hand edit) is reported with its file and line number and skipped;
it is never fatal and never removed. Before appending to a file whose last line lacks its
newline, a newline is written first, so the torn line stays one malformed line and the new
row stays intact. A row that cannot be written whole (a full disk) is cut back to where the
file ended before it, so no torn line is left, and :class:`RowNotWritten` says why.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from suites.rows.names import current_names
from suites.rows.row_types import type_problem
from suites.rows.schema import SCHEMA_VERSION

# Where a plain run writes (ignored by git), and the committed record of measurements.
DEFAULT_OUT = Path("runs")
COMMITTED_OUT = Path("results")


def utc_stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_rows(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows of one results file and a note for every line that is not a JSON object or
    whose fields do not have the schema's types (suites.rows.row_types).

    Names written under an older spelling (an older schema_version) are read as today's
    (suites.rows.names)."""
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
            version = row.get("schema_version")
            if isinstance(version, int) and version > SCHEMA_VERSION:
                # Written by newer code, whose fields may mean other things: not measured
                # here, so a resume measures the point again instead of misreading it.
                problems.append(
                    f"{path}:{number}: row of schema {version} skipped (this code reads up to "
                    f"schema {SCHEMA_VERSION}): its point counts as not measured"
                )
                continue
            # Today's names first, so the types of an older row's fields are checked too.
            row = current_names(row)
            wrong = type_problem(row)
            if wrong is not None:
                problems.append(f"{path}:{number}: row skipped ({wrong})")
                continue
            rows.append(row)
    return rows, problems


def _result_rows(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows of a run file that are results (they have a status), and notes. A line such
    as ``{}`` is valid JSON but no result: counted as one, it would make the file look like
    another grid's, and the run would silently start over in a new file."""
    rows, problems = read_rows(path)
    results = [row for row in rows if "status" in row]
    if len(results) < len(rows):
        problems.append(
            f"{path}: {len(rows) - len(results)} row(s) without a status skipped (not results)"
        )
    return results, problems


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
    def open(
        cls,
        out_dir: Path,
        suite: str,
        device: str,
        *,
        fresh: bool = False,
        grid: dict[str, Any] | None = None,
    ) -> RunFile:
        """Continue the newest file of (suite, device) holding ``grid`` (``mode`` and
        ``grid_id``; None: any), or start a new one if fresh or there is none."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        notes: list[str] = []
        if not fresh:
            for path in reversed(run_files(out_dir, suite, device)):
                rows, problems = _result_rows(path)
                if grid is None or holds_grid(rows, grid):
                    # Before any point is measured: a file that cannot take a row would
                    # lose the first measurement.
                    os.close(_open_for_append(path))
                    return cls(path, rows, problems)
                if not notes:
                    # Said, never silent: a run that does not resume the newest file
                    # measures every point again.
                    notes.append(
                        f"{path} holds another grid or process settings ({_grid_of(rows)}), "
                        "so this run starts a file of its own and measures every point"
                    )
        return cls(_new_path(out_dir, f"{suite}_{device}_{utc_stamp()}"), [], notes)

    def ok_keys(self) -> set[str]:
        return {
            row["point_key"]
            for row in self.rows
            if row.get("status") == "ok" and isinstance(row.get("point_key"), str)
        }

    def append(self, row: dict[str, Any]) -> None:
        """Write ``row`` as one line, whole or not at all (RowNotWritten)."""
        line = json.dumps(_jsonable(row), sort_keys=False).encode("utf-8") + b"\n"
        fd = _open_for_append(self.path)
        try:
            end = os.lseek(fd, 0, os.SEEK_END)
            if end > 0 and os.pread(fd, 1, end - 1) != b"\n":
                line = b"\n" + line
            try:
                _write_all(fd, line)
            except OSError as exc:
                # Only the bytes this call wrote are cut: the rows before stay as they were.
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, end)
                raise RowNotWritten(self.path, exc) from exc
        finally:
            os.close(fd)
        self.rows.append(row)


def _open_for_append(path: Path) -> int:
    """A descriptor that appends to ``path``, or RowNotWritten saying why not (a file made
    read-only or immutable, a folder that lost its write permission)."""
    try:
        return os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as exc:
        raise RowNotWritten(path, exc) from exc


class RowNotWritten(RuntimeError):
    """A row could not be appended whole (a full disk, a quota, a file that may not be
    written); the file is as it was."""

    def __init__(self, path: Path, cause: OSError) -> None:
        full = cause.errno in (errno.ENOSPC, errno.EDQUOT)
        reason = "the disk is full" if full else f"the write failed ({cause.strerror or cause})"
        remedy = "once there is room" if full else "once it can be written"
        super().__init__(
            f"{reason}: could not append a row to {path}; the rows before it are intact and "
            f"no partial line was left, so {remedy} the same command resumes"
        )
        self.path = path


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def holds_grid(rows: list[dict[str, Any]], grid: dict[str, Any]) -> bool:
    """Whether every row of a run file belongs to ``grid``: its ``mode`` and ``grid_id``,
    and any other field it names (the process settings), which every row must match, a
    missing one reading as null (unset). Rows written before grid ids match on their mode
    alone, rows without a mode (older still, or written by hand) on the other fields
    alone; a file with no rows yet belongs to any grid."""
    for row in rows:
        if any(row.get(name) != value for name, value in grid.items() if name not in _GRID):
            return False
        if row.get("mode") is None:
            continue
        if row["mode"] != grid["mode"]:
            return False
        if row.get("grid_id") is not None and row["grid_id"] != grid["grid_id"]:
            return False
    return True


_GRID = ("mode", "grid_id")


def _grid_of(rows: list[dict[str, Any]]) -> str:
    """What the first row of a file says about its grid, for a note."""
    if not rows:
        return "no rows"
    first = rows[0]
    fields = ("mode", "grid_id", "num_threads", "omp_wait_policy", "malloc_mmap_threshold")
    return ", ".join(f"{name} {first.get(name)}" for name in fields)


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
