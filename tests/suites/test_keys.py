"""Resume keys are stable: the grids still produce the keys of the committed result rows.

A point's key hashes its row fields; if building points changed those fields, a resumed
sweep would measure every committed point again. The newest file of each suite is what a
resume continues, so each of its ``ok`` rows must be a point of one of the suite's grids.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from suites.env import REPO_ROOT, hardware_name
from suites.registry import GridContext, load_suites
from suites.store import read_rows, run_files

RESULTS = REPO_ROOT / "results"
SUITES = sorted({path.name.split("_")[0] for path in RESULTS.glob("*_cpu_*.jsonl")})


def _newest_ok_rows(suite: str) -> list[dict]:
    files = run_files(RESULTS, suite, "cpu")
    rows, _ = read_rows(Path(files[-1]))
    return [row for row in rows if row.get("status") == "ok"]


@pytest.mark.parametrize("suite", SUITES)
def test_committed_rows_keep_their_point_keys(suite):
    rows = _newest_ok_rows(suite)
    assert rows, f"no ok rows in the newest {suite} file"
    # --threads N makes the thread count part of the key; rows record the count used.
    thread_counts = {None} | {row.get("num_threads") for row in rows}
    keys = set()
    for hardware in {hardware_name(row, "cpu") for row in rows}:
        for mode in ("quick", "default", "full"):
            for point in load_suites()[suite].grid(GridContext(device="cpu", mode=mode)):
                for threads in thread_counts:
                    keyed = point if threads is None else point.with_threads(threads)
                    keys.add(keyed.key(suite, hardware))
    lost = [(row["model"], row["seq_len"]) for row in rows if row["point_key"] not in keys]
    assert not lost, f"{len(lost)} of {len(rows)} committed {suite} rows would be re-measured"
