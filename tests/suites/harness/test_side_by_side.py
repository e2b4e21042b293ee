"""Points side by side (``--jobs``, suites.harness.executors.side_by_side): they really run
at once, points that share ``serial`` never do, a cancelled point's child dies, and only
suites whose figures are not times accept it."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from suites.harness.executors.jobs import Job
from suites.harness.executors.side_by_side import SideBySideExecutor
from suites.harness.options import SweepOptions
from suites.harness.points import Point
from suites.harness.suite import GridContext, Suite
from suites.harness.sweep import run_sweep, side_by_side_threads
from suites.rows.store import read_rows
from suites.run import main

CTX = GridContext(device="cpu", mode="quick")
RUNNERS = "tests.suites.point_runners"


def _meeting(room: Path, lengths: list[int], wait_s: float, serial: str | None) -> list[Point]:
    base = {"model": "m", "phase": "fwd", "batch": 1, "device": "cpu", "room": str(room)}
    return [
        Point(
            params={
                **base,
                "seq_len": n,
                "others": [m for m in lengths if m != n],
                "wait_s": wait_s,
            },
            runner=f"{RUNNERS}:meet",
            timeout_s=120,
            serial=serial,
        )
        for n in lengths
    ]


def _sweep(points: list[Point], out: Path, jobs: int, side_by_side: bool = True) -> list[dict]:
    suite = Suite(
        name="tiny", description="test", grid=lambda ctx: list(points), side_by_side=side_by_side
    )
    options = SweepOptions(out_dir=out, progress=False, jobs=jobs, max_memory_gb=None)
    run_file = run_sweep(suite, CTX, options, log=io.StringIO())
    rows, _ = read_rows(run_file.path)
    return rows


def test_two_jobs_run_two_points_at_once(tmp_path):
    room = tmp_path / "room"
    room.mkdir()
    rows = _sweep(_meeting(room, [8, 16], wait_s=60, serial=None), tmp_path / "out", jobs=2)
    assert [row["status"] for row in rows] == ["ok", "ok"]
    assert {row["impl"] for row in rows} == {"met"}
    assert {row["jobs"] for row in rows} == {2}


def test_points_sharing_serial_never_overlap_even_with_room(tmp_path):
    room = tmp_path / "room"
    room.mkdir()
    points = _meeting(room, [8, 16, 32], wait_s=2, serial="one-run")
    rows = _sweep(points, tmp_path / "out", jobs=3)
    assert [row["status"] for row in rows] == ["ok"] * 3
    # The first waits for the others, which start only after it ends; the last finds all.
    assert [row["impl"] for row in rows] == ["alone", "alone", "met"]
    assert [row["seq_len"] for row in rows] == [8, 16, 32]


def test_serial_points_are_one_family_and_others_keep_theirs():
    a = Point(params={"model": "a", "seq_len": 8}, serial="run-1")
    b = Point(params={"model": "b", "seq_len": 8}, serial="run-1")
    c = Point(params={"model": "c", "seq_len": 8})
    d = Point(params={"model": "c", "seq_len": 16})
    assert a.family() == b.family() != c.family()
    assert c.family() == d.family()


def test_a_cancelled_job_kills_its_child_and_never_comes_back(tmp_path):
    executor = SideBySideExecutor("cpu-test", jobs=2)
    point = Point(
        params={"model": "m", "seq_len": 8, "phase": "fwd"},
        runner=f"{RUNNERS}:sleep_long",
        timeout_s=120,
    )
    executor.submit(Job(ident=1, point=point, timeout_s=120, max_memory_gb=None))
    for _ in range(200):  # wait for the child to start
        if executor._running.get(1) is not None:
            break
        executor.finished(0.05)
    child = executor._running[1]
    assert child is not None and child.is_alive()
    executor.cancel(1)
    child.join(timeout=30)
    assert not child.is_alive()
    assert executor.finished(5.0) == []  # its result is dropped
    assert executor.busy() == 0
    executor.close()


def test_waiting_jobs_start_biggest_family_first():
    executor = SideBySideExecutor("cpu-test", jobs=2)
    executor._running = {90: None, 91: None}  # both slots taken
    for ident, work in ((1, 10.0), (2, 30.0), (3, 20.0)):
        point = Point(params={"model": str(ident), "seq_len": 8})
        executor._waiting.append(
            Job(ident=ident, point=point, timeout_s=1, max_memory_gb=None, family_work=work)
        )
    executor._start_waiting()  # no room: only the order changes
    assert [job.ident for job in executor._waiting] == [2, 3, 1]


def test_a_timed_suite_refuses_jobs(tmp_path):
    with pytest.raises(ValueError, match="one at a time"):
        _sweep(_meeting(tmp_path, [8], 1, None), tmp_path / "out", jobs=2, side_by_side=False)
    with pytest.raises(SystemExit):
        main(["time", "--jobs", "2", "--list"])
    with pytest.raises(SystemExit):
        main(["quality", "--jobs", "2", "--executor", "ray", "--list"])
    with pytest.raises(ValueError, match="jobs must be an int >= 1"):
        SweepOptions(jobs=0)


def test_time_suite_error_names_the_flag_and_the_suites_allowed(capsys):
    with pytest.raises(SystemExit):
        main(["memory", "--jobs", "2", "--list"])
    err = capsys.readouterr().err
    assert "--jobs 2" in err and "['quality']" in err


def test_side_by_side_points_share_the_cores():
    assert side_by_side_threads(None, 1, "cpu") is None
    assert side_by_side_threads(3, 2, "cpu") == 3
    assert side_by_side_threads(None, 2, "cuda") is None
    from suites.harness.environment import usable_cpus

    cpus = usable_cpus()
    assert side_by_side_threads(None, 2, "cpu") == max(1, cpus // 2)
    assert side_by_side_threads(None, cpus * 4, "cpu") == 1


def test_quality_points_of_one_run_share_serial():
    from suites.grids.quality import grid

    points = grid(GridContext(device="cpu", mode="quick"))
    by_run: dict[str, set] = {}
    for point in points:
        by_run.setdefault(point.params["run_key"], set()).add(point.serial)
    assert all(serials == {key} for key, serials in by_run.items())
    assert len({point.family() for point in points}) == len(by_run)


def test_the_default_memory_cap_is_shared_out_and_a_given_one_kept():
    from suites.harness.sweep import memory_cap

    suite = Suite(
        name="tiny", description="test", grid=lambda ctx: [], default_max_memory_gb=lambda c: 8.0
    )
    assert memory_cap(suite, CTX, None) == 8.0
    assert memory_cap(suite, CTX, None, jobs=2) == 4.0
    assert memory_cap(suite, CTX, 3.0, jobs=2) == 3.0


def test_quality_runs_that_train_longest_come_first():
    from suites.grids.quality import grid

    points = grid(GridContext(device="cpu", mode="default"))
    first = {}
    for point in points:  # a run's first point trains it
        first.setdefault(point.serial, point)
    trains = {point.params["task"]: point.cost() for point in first.values()}
    evaluates = max(point.cost() for point in points if first[point.serial] is not point)
    # Duplication trains 2400 x 8 x 512 tokens, the byte LM 1500 x 4 x 256.
    assert trains["duplication"] == 2400 * 8 * 512
    assert trains["bytes"] == 1500 * 4 * 256
    assert evaluates < min(trains.values())
    # Without a suite's word, a point costs its length.
    assert Point(params={"seq_len": 64}).cost() == 64.0
