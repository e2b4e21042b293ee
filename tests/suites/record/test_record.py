"""suites.record: the state of each suite from the committed rows, waiting for an idle
machine, and --run measuring only what is not current, resuming a stopped run."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from suites.harness.environment import REPO_ROOT
from suites.record import __main__ as record
from suites.record.plan import ENTRIES, RECORD, select
from suites.record.quiet import Busy, wait_for_quiet
from suites.record.state import run_wall_s, seeds_of, suite_state

HEAD = subprocess.run(
    ["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True
).stdout.strip()
# The commit that made the first file under reformer/: stale on any later HEAD that
# changed the model code (every HEAD since has).
FIRST = subprocess.run(
    ["git", "-C", str(REPO_ROOT), "rev-list", "--reverse", "HEAD", "--", "reformer"],
    capture_output=True,
    text=True,
).stdout.split()[:1]
CPU = "Test CPU"


def _rows(n: int, *, sha: str = HEAD, load: float = 0.1, cpu: str = CPU, **extra: Any):
    return [
        {
            "point_key": f"p{i}",
            "status": "ok",
            "git_sha": sha,
            "git_dirty": False,
            "cpu_model": cpu,
            "n_cpus": 2,
            "load_avg_1m": load,
            "mode": "default",
            "grid_points": extra.pop("grid_points", n) if i == 0 else n,
            "timestamp_utc": f"2026-12-07T10:00:{10 * (i + 1):02d}+00:00",
            "wall_s": 10.0,
            **extra,
        }
        for i in range(n)
    ]


def _write(folder: Path, name: str, rows: list[dict[str, Any]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.mark.skipif(not HEAD or not FIRST, reason="needs the project's git history")
def test_each_state_is_read_from_the_rows(tmp_path):
    hashes = ENTRIES["hashes"]
    assert suite_state(hashes, tmp_path, CPU).state == "missing"
    _write(tmp_path, "hashes_cpu_20261201T000000Z.jsonl", _rows(3, sha=FIRST[0]))
    stale = suite_state(hashes, tmp_path, CPU)
    assert stale.state == "stale" and stale.detail.endswith("model commits") and stale.todo
    # Another CPU model's run, however current, is not this machine's record.
    _write(tmp_path, "hashes_cpu_20261202T000000Z.jsonl", _rows(3, cpu="Other CPU"))
    assert suite_state(hashes, tmp_path, CPU).state == "stale"
    partial = _write(tmp_path, "hashes_cpu_20261203T000000Z.jsonl", _rows(2)[:1])
    with open(partial, "a") as handle:  # a run of 3 points stopped after the first
        row = _rows(1)[0] | {"grid_points": 3}
        handle.write(json.dumps(row) + "\n")
    state = suite_state(hashes, tmp_path, CPU)
    assert (state.state, state.detail, state.resume) == ("partial", "1 of 3 points", True)
    busy = _rows(3)
    busy[1]["load_avg_1m"] = 9.0
    _write(tmp_path, "hashes_cpu_20261204T000000Z.jsonl", busy)
    assert suite_state(hashes, tmp_path, CPU).detail == "1 of 3 points under load"
    _write(tmp_path, "hashes_cpu_20261205T000000Z.jsonl", _rows(3))
    current = suite_state(hashes, tmp_path, CPU)
    assert current.state == "current" and not current.todo
    # the first point started 10 s before it ended at :10; the last ended at :30
    assert current.estimate_s == pytest.approx(30.0)
    assert "here" in current.estimate_from


def test_the_estimate_adds_the_samples_an_older_run_lacked(tmp_path):
    # A point timed once (a step slower than its budget) is timed MIN_SAMPLES times now.
    rows = _rows(2)
    rows[0] |= {"n_samples": 1, "t_median_ms": 5000.0}
    rows[1] |= {"n_samples": 7, "t_median_ms": 10.0}
    _write(tmp_path, "time_cpu_20261201T000000Z.jsonl", rows)
    state = suite_state(ENTRIES["time"], tmp_path, CPU)
    assert state.estimate_s == pytest.approx(run_wall_s(rows) + 2 * 5.0)
    assert "+10 s for 3 samples" in state.estimate_from
    # Three points new since: two at a length the run has (at its mean there), one at a
    # length it has not (at the run's mean point).
    for row, (length, wall) in zip(rows, [(64, 4.0), (128, 8.0)], strict=True):
        row |= {"seq_len": length, "wall_s": wall}
    _write(tmp_path, "time_cpu_20261201T000000Z.jsonl", rows)
    grown = suite_state(ENTRIES["time"], tmp_path, CPU, planned_points=[64, 64, 64, 128, 256])
    assert "3 points new since, +14 s" in grown.estimate_from
    assert grown.estimate_s == pytest.approx(run_wall_s(rows) + 2 * 5.0 + 2 * 4.0 + 6.0)
    _write(tmp_path, "memory_cpu_20261201T000000Z.jsonl", rows)  # times one call on purpose
    assert suite_state(ENTRIES["memory"], tmp_path, CPU).estimate_s == run_wall_s(rows)


def test_a_quality_run_is_matched_by_its_seed_count(tmp_path):
    quality = ENTRIES["quality"]
    one = _rows(4, seed=0)
    assert seeds_of(one) == 1
    assert seeds_of(_rows(2, argv=["python", "-m", "suites.run", "quality", "--seeds", "3"])) == 3
    _write(tmp_path, "quality_cpu_20261201T000000Z.jsonl", one)
    state = suite_state(quality, tmp_path, CPU)
    # a one-seed run is not the three-seed record, but it times it: 3 x its wall
    assert state.state == "missing"
    assert state.estimate_s == pytest.approx(3 * run_wall_s(one))
    assert "x 3/1 seeds" in state.estimate_from
    # A run of some of the grid's models is no measure of the whole grid's time.
    part = _rows(1, seed=0, argv=["python", "-m", "suites.run", "quality", "--train", "local"])
    _write(tmp_path, "quality_cpu_20261202T000000Z.jsonl", part)
    assert suite_state(quality, tmp_path, CPU).estimate_from == state.estimate_from


def test_select_keeps_record_order_and_names_the_allowed_suites():
    assert [e.suite for e in select("chunks,hashes")] == ["hashes", "chunks"]
    assert select(None) == list(RECORD)
    with pytest.raises(ValueError, match="allowed: hashes, chunks"):
        select("hashes,nope")
    assert ENTRIES["scale"].command("results", fresh=True)[3:] == [
        "scale",
        "--out",
        "results",
        "--paper",
        "--lengths",
        "1M",
        "--fresh",
    ]


def test_waiting_for_an_idle_machine_and_giving_up():
    loads = iter([1.4, 0.9, 0.3])
    now = [0.0]
    said: list[str] = []

    def sleep(seconds: float) -> None:
        now[0] += seconds

    got = wait_for_quiet(
        600, say=said.append, load=lambda: next(loads), sleep=sleep, clock=lambda: now[0]
    )
    assert got == 0.3 and now[0] == 20.0 and "waiting" in said[0]
    with pytest.raises(Busy, match="stayed at or above 0.5 for 30 s"):
        wait_for_quiet(
            30, say=said.append, load=lambda: 2.0, sleep=sleep, clock=lambda: now[0] - 20.0
        )


@pytest.mark.skipif(not HEAD, reason="needs the project's git history")
def test_run_measures_what_is_not_current_and_resumes_a_stopped_suite(
    tmp_path, monkeypatch, capsys
):
    out = tmp_path / "results"
    _write(out, "hashes_cpu_20261205T000000Z.jsonl", _rows(3))  # current
    stopped = _write(out, "chunks_cpu_20261205T000000Z.jsonl", _rows(3)[:1])
    with open(stopped, "a") as handle:
        handle.write(json.dumps(_rows(1)[0] | {"point_key": "p1", "grid_points": 3}) + "\n")
    calls: list[list[str]] = []

    def fake_run(command: list[str], cwd: Path) -> int:
        calls.append(command)
        suite = command[3]
        if suite == "chunks":  # the resumed run measures its last point
            with open(stopped, "a") as handle:
                handle.write(json.dumps(_rows(3)[2] | {"point_key": "p2"}) + "\n")
        else:
            _write(out, f"{suite}_cpu_20261206T000000Z.jsonl", _rows(2))
        return 0

    monkeypatch.setattr(record, "cpu_model", lambda: CPU)
    monkeypatch.setattr(record.subprocess, "call", fake_run)
    monkeypatch.setattr(record, "wait_for_quiet", lambda max_wait, say: 0.1)
    argv = ["--run", "--suites", "hashes,chunks,reversible", "--out", str(out), "--no-reports"]
    assert record.main(argv) == 0
    suites = [(c[3], "--fresh" in c) for c in calls]
    assert suites == [("chunks", False), ("reversible", True)]  # hashes is current
    text = capsys.readouterr().out
    assert "resuming chunks_cpu_20261205T000000Z.jsonl" in text
    assert "reversible: exit 0, now current" in text
    # Started again, nothing is left to do.
    calls.clear()
    assert record.main(argv) == 0 and calls == []


def test_a_busy_machine_stops_the_record_before_a_suite(tmp_path, monkeypatch, capsys):
    def busy(max_wait: float, say: Any) -> float:
        raise Busy("the 1-minute load stayed at or above 0.5")

    monkeypatch.setattr(record, "wait_for_quiet", busy)
    monkeypatch.setattr(record.subprocess, "call", lambda *a, **k: pytest.fail("ran"))
    out = tmp_path / "results"
    assert record.main(["--run", "--suites", "hashes", "--out", str(out)]) == 4
    assert "hashes not started" in capsys.readouterr().err


def test_bad_flags_are_refused(capsys):
    for argv, field in (
        (["--max-wait", "0"], "--max-wait=0.0"),
        (["--commit"], "--commit and --no-reports go with --run"),
        (["--suites", "bogus"], "allowed: hashes"),
    ):
        with pytest.raises(SystemExit):
            record.parse_args(argv)
        assert field in capsys.readouterr().err


def test_a_side_by_side_run_is_timed_from_its_earliest_start():
    # Two points at once: the second ends first but started later; the first started at 0.
    rows = [
        {"timestamp_utc": "2026-12-01T00:00:10+00:00", "wall_s": 10.0, "jobs": 2},
        {"timestamp_utc": "2026-12-01T00:00:06+00:00", "wall_s": 4.0, "jobs": 2},
        {"timestamp_utc": "2026-12-01T00:00:12+00:00", "wall_s": 6.0, "jobs": 2},
    ]
    assert run_wall_s(rows) == pytest.approx(12.0)
    # One after another, the same rule gives first start to last end.
    assert run_wall_s(rows[:1] + [rows[2] | {"wall_s": 2.0}]) == pytest.approx(12.0)


def test_new_points_of_a_side_by_side_run_count_a_share_of_their_wall():
    from suites.record.state import new_points_s

    rows = [{"seq_len": 64, "wall_s": 10.0, "jobs": 2, "point_key": "a", "status": "ok"}]
    assert new_points_s(rows, [64, 64]) == (1, pytest.approx(5.0))
