"""The sweep loop over an executor (suites.harness.executors.dispatch), without Ray: a fake
executor that returns results out of order, and the CLI's checks of the executor flags."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from suites.harness.executors.dispatch import measure_points
from suites.harness.executors.jobs import Finished, Job
from suites.harness.points import Point
from suites.run import main


class FakeExecutor:
    """Room for ``room`` jobs; finishes the newest first (out of submission order), with
    the status ``outcomes[(model, seq_len)]`` (default ok), on ``kinds``."""

    blocking = False

    def __init__(
        self, outcomes: dict[tuple[str, int], str], room: int, kinds: tuple[str, ...] = ("cpu-a",)
    ) -> None:
        self.outcomes, self.room, self.kinds = outcomes, room, kinds
        self.jobs: list[Job] = []
        self.submitted: list[tuple[str | None, str, int]] = []
        self.most_in_flight_per_family = 0

    def hardware(self) -> list[str]:
        return list(self.kinds)

    def has_room(self) -> bool:
        return len(self.jobs) < self.room

    def submit(self, job: Job) -> None:
        self.jobs.append(job)
        params = job.point.params
        self.submitted.append((job.hardware, params["model"], params["seq_len"]))
        families = [(j.hardware, j.point.family()) for j in self.jobs]
        self.most_in_flight_per_family = max(
            self.most_in_flight_per_family, max(families.count(f) for f in families)
        )

    def finished(self, wait_s: float) -> list[Finished]:
        job = self.jobs.pop()
        params = job.point.params
        status = self.outcomes.get((params["model"], params["seq_len"]), "ok")
        return [
            Finished(
                ident=job.ident,
                result={"status": status, "error": None},
                hardware=job.hardware or self.kinds[0],
            )
        ]

    def cancel(self, ident: int) -> None:
        self.jobs = [job for job in self.jobs if job.ident != ident]

    def busy(self) -> int:
        return len(self.jobs)

    def close(self) -> None:
        self.jobs = []


def _points(models: tuple[str, ...], lengths: tuple[int, ...]) -> list[Point]:
    points = [
        Point(params={"model": model, "phase": "fwd", "seq_len": length, "batch": 1})
        for length in lengths
        for model in models
    ]
    return sorted(points, key=lambda point: point.seq_len)


def _measure(
    points: list[Point],
    executor: FakeExecutor,
    done: set[str] | None = None,
    rows: list[tuple[str, int, str, str | None]] | None = None,
    **kwargs: Any,
) -> list[tuple[str, int, str, str | None]]:
    """The rows written, as (model, seq_len, status, error), appended to ``rows``."""
    rows = [] if rows is None else rows

    def record(point: Point, key: str, result: dict[str, Any]) -> None:
        rows.append((point.params["model"], point.seq_len, result["status"], result.get("error")))

    measure_points(
        points,
        executor,
        suite="tiny",
        done=done or set(),
        record=record,
        max_memory_gb=None,
        timeout_s=None,
        progress=False,
        **kwargs,
    )
    return rows


def test_out_of_order_results_still_skip_the_longer_lengths_after_an_oom():
    points = _points(("big", "small", "mid"), (1, 2, 4, 8))
    executor = FakeExecutor({("big", 2): "oom", ("mid", 4): "timeout"}, room=3)
    rows = {
        (model, length): (status, error)
        for model, length, status, error in _measure(points, executor)
    }
    assert len(rows) == len(points)
    assert rows[("big", 2)][0] == "oom" and rows[("mid", 4)][0] == "timeout"
    for model, status, stopped_at in (("big", "oom", 2), ("mid", "timeout", 4)):
        for length in (n for n in (1, 2, 4, 8) if n > stopped_at):
            assert rows[(model, length)] == (
                "skipped",
                f"a shorter length of this family ended in {status} (seq_len={stopped_at})",
            ), (model, length)
            assert (None, model, length) not in executor.submitted  # never started
    assert all(rows[("small", n)][0] == "ok" for n in (1, 2, 4, 8))
    assert executor.most_in_flight_per_family == 1
    assert not executor.jobs


def test_with_room_for_one_the_order_is_the_sorted_order_of_the_points():
    points = _points(("a", "b"), (1, 2, 4))
    executor = FakeExecutor({("a", 2): "oom"}, room=1)
    rows = _measure(points, executor)
    assert [(model, length) for model, length, _, _ in rows] == [
        (p.params["model"], p.seq_len) for p in points
    ]
    assert [status for _, _, status, _ in rows] == ["ok", "ok", "oom", "ok", "skipped", "ok"]


def test_a_job_carries_the_work_left_in_its_family():
    points = _points(("a", "b"), (1, 2, 4))
    executor = FakeExecutor({}, room=2)
    work = []
    submit = executor.submit

    def recording_submit(job: Job) -> None:
        work.append((job.point.params["model"], job.point.seq_len, job.family_work))
        submit(job)

    executor.submit = recording_submit  # type: ignore[method-assign]
    _measure(points, executor)
    assert sorted(work) == [(m, n, left) for m in "ab" for n, left in ((1, 7), (2, 6), (4, 4))]


def test_per_hardware_measures_each_point_once_per_kind_and_resumes_per_kind():
    points = _points(("a",), (1, 2))
    executor = FakeExecutor({}, room=4, kinds=("gpu-x", "gpu-y"))
    done = {points[0].key("tiny", "gpu-x")}
    _measure(points, executor, done=done, per_hardware=True)
    assert sorted(executor.submitted) == [("gpu-x", "a", 2), ("gpu-y", "a", 1), ("gpu-y", "a", 2)]
    executor = FakeExecutor({}, room=4, kinds=("gpu-x", "gpu-y"))
    _measure(points, executor, done=done)  # without per_hardware: any kind will do
    assert executor.submitted == [(None, "a", 2)]


def test_cli_checks_the_executor_flags(monkeypatch, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["memory", "--quick", "--ray-address", "auto"])
    assert exc.value.code == 2 and "--ray-address applies only to --executor ray" in (
        capsys.readouterr().err
    )
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    with pytest.raises(SystemExit) as exc:
        main(["memory", "--quick", "--executor", "ray"])
    assert exc.value.code == 2 and "reformer-bench[ray]" in capsys.readouterr().err


def test_ctrl_c_cancels_what_runs_and_writes_it_as_an_error():
    class Interrupted(FakeExecutor):
        def finished(self, wait_s: float) -> list[Finished]:
            raise KeyboardInterrupt

    points = _points(("a", "b", "c"), (1,))
    executor = Interrupted({}, room=2)
    rows: list[tuple[str, int, str, str | None]] = []
    with pytest.raises(KeyboardInterrupt):
        _measure(points, executor, rows=rows)
    assert not executor.jobs  # both running jobs were cancelled
    assert sorted(executor.submitted) == [(None, "a", 1), (None, "b", 1)]
    assert sorted(rows) == [
        ("a", 1, "error", "interrupted (KeyboardInterrupt)"),
        ("b", 1, "error", "interrupted (KeyboardInterrupt)"),
    ]
