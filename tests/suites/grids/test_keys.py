"""Resume keys are stable: the grids still produce the keys of the committed result rows.

A point's key hashes its row fields; if building points changed those fields, a resumed
sweep would measure every committed point again. The newest file of each suite is what a
resume continues, so each of its ``ok`` rows must be a point of one of the suite's grids.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from suites.harness.environment import REPO_ROOT
from suites.harness.suite import GridContext
from suites.registry import load_suites
from suites.rows.names import hardware_name
from suites.rows.store import read_rows, run_files

RESULTS = REPO_ROOT / "results"
SUITES = sorted({path.name.split("_")[0] for path in RESULTS.glob("*_cpu_*.jsonl")})
# Grids changed on purpose since their newest committed file: {suite: (why, rule for the
# committed rows no grid has any more)}. Every other committed row must keep its key.
RETIRED = {
    "chunks": (
        "the slice_elements sweep names the torch path since the fused CPU kernel (which "
        "ignores the budget) became auto's choice; its older rows ran the torch path too "
        "but were keyed without the name, and the CPU grid no longer has the default-budget "
        "point of that sweep",
        lambda row: "slice_elements" in row,
    ),
    "memory": (
        "the main job became depth x length (2 and 6 layers, training step, four "
        "models); the old 2-layer grid's inference (fwd) points and reformer-full models "
        "are in no grid now, its 2-layer training steps of the four models still are",
        lambda row: (
            row["n_layers"] == 2
            and (row["phase"] == "fwd" or row["model"].startswith("reformer-full"))
        ),
    ),
}


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
    # A quality run of N seeds (--seeds N) holds the points of seeds 0..N-1.
    seeds = 1 + max((row["seed"] for row in rows if isinstance(row.get("seed"), int)), default=0)
    keys = set()
    for hardware in {hardware_name(row, "cpu") for row in rows}:
        for mode in ("quick", "default", "paper"):
            ctx = GridContext(device="cpu", mode=mode, seeds=seeds if suite == "quality" else 1)
            for point in load_suites()[suite].grid(ctx):
                for threads in thread_counts:
                    keyed = point if threads is None else point.with_threads(threads)
                    keys.add(keyed.key(suite, hardware))
    retired = RETIRED.get(suite, ("", lambda row: False))[1]
    lost = [
        (row["model"], row["phase"], row["seq_len"])
        for row in rows
        if row["point_key"] not in keys and not retired(row)
    ]
    assert not lost, f"{len(lost)} of {len(rows)} committed {suite} rows would be re-measured"
    kept = [row for row in rows if row["point_key"] in keys]
    assert len(kept) >= len(rows) / 3, f"most committed {suite} rows lost their keys"
