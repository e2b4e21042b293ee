"""--executor ray on a real two-CPU local Ray cluster (the ``ray_cluster`` fixture): the same
points and statuses as the local executor, failures mapped onto statuses, a driver killed
mid-sweep, and one writer. Skipped where ray is not installed."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from suites.harness.environment import REPO_ROOT
from suites.harness.options import SweepOptions
from suites.harness.points import Point
from suites.harness.suite import GridContext, Suite
from suites.harness.sweep import run_sweep
from suites.registry import get_suite
from suites.rows.store import read_rows

CTX = GridContext(device="cpu", mode="quick")
RUNNERS = "tests.suites.point_runners"


def _point(
    runner: str, model: str, seq_len: int, timeout_s: float = 60.0, **params: object
) -> Point:
    return Point(
        params={
            "model": model,
            "phase": "fwd",
            "seq_len": seq_len,
            "batch": 1,
            "device": "cpu",
            "num_threads": 1,
            **params,
        },
        runner=f"{RUNNERS}:{runner}",
        timeout_s=timeout_s,
        min_run_time=0.0,
    )


def _suite(points: list[Point], name: str = "tiny") -> Suite:
    return Suite(name=name, description="test", grid=lambda ctx: list(points))


def _sweep(points: list[Point], out_dir: Path, **kwargs: object):
    return run_sweep(
        _suite(points),
        CTX,
        SweepOptions(out_dir=out_dir, progress=False, executor="ray", **kwargs),
        log=io.StringIO(),
    )


@pytest.mark.slow
def test_the_quick_memory_grid_gives_the_same_keys_and_statuses_as_local(ray_cluster, tmp_path):
    suite = get_suite("memory")

    def sweep(executor: str):
        return run_sweep(
            suite,
            CTX,
            SweepOptions(out_dir=tmp_path / executor, threads=1, progress=False, executor=executor),
            log=io.StringIO(),
        )

    # Side by side: the local executor keeps one core busy, Ray's two workers share both.
    with ThreadPoolExecutor(max_workers=1) as pool:
        local = pool.submit(sweep, "local")
        run_files = {"ray": sweep("ray"), "local": local.result()}
    outcomes = {}
    for executor, run_file in run_files.items():
        rows, problems = read_rows(run_file.path)
        assert not problems
        outcomes[executor] = {(row["point_key"], row["status"]) for row in rows}
        assert len(outcomes[executor]) == len(rows) == len(suite.grid(CTX))
    assert outcomes["ray"] == outcomes["local"]
    ray_rows, _ = read_rows(next((tmp_path / "ray").glob("*.jsonl")))
    import ray

    node_id = ray.get_runtime_context().get_node_id()
    assert {row["ray_node_id"] for row in ray_rows} == {node_id}
    assert all(row["node_hardware"] == row["cpu_model"] and row["host"] for row in ray_rows)


def test_failures_become_statuses_and_the_sweep_goes_on(ray_cluster, tmp_path):
    points = [
        _point("kill_self", "killed", 8),
        _point("kill_worker", "worker-dies", 8),
        _point("sleep_long", "slow", 8, timeout_s=1.0),
        _point("sleep_long", "slow", 16, timeout_s=1.0),
        _point("ok", "fine", 16),
    ]
    rows = {(row["model"], row["seq_len"]): row for row in _sweep(points, tmp_path).rows}
    assert len(rows) == len(points)
    assert rows[("killed", 8)]["status"] == "oom"  # the child's SIGKILL, as locally
    assert "SIGKILL" in rows[("killed", 8)]["error"]
    died = rows[("worker-dies", 8)]
    assert died["status"] == "error" and "ActorDiedError" in died["error"], died["error"]
    assert died["ray_node_id"]  # it had started: the row says where
    assert rows[("slow", 8)]["status"] == "timeout"
    assert rows[("slow", 16)]["status"] == "skipped"
    assert "timeout (seq_len=8)" in rows[("slow", 16)]["error"]
    assert rows[("fine", 16)]["status"] == "ok"


def test_points_run_in_warm_workers_one_per_slot(ray_cluster, tmp_path):
    """Six points on two one-CPU slots: two worker processes measure them all (no worker
    per point), and every row is ok."""
    points = [_point("runner_pid", f"w{i}", 8) for i in range(6)]
    rows = _sweep(points, tmp_path).rows
    assert [row["status"] for row in rows] == ["ok"] * len(points), [r["error"] for r in rows]
    assert 1 <= len({row["runner_pid"] for row in rows}) <= 2


def test_a_hung_worker_is_cancelled_by_the_driver_as_a_timeout(ray_cluster, tmp_path):
    from suites.harness.executors.dispatch import measure_points
    from suites.harness.executors.ray_executor import RayExecutor

    results = {}
    executor = RayExecutor(device="cpu", log=io.StringIO(), grace_s=1.0)
    try:
        # The timeout leaves the point's child time to start and stop its worker even on
        # a loaded machine; with less, run_point's own timeout can fire first.
        measure_points(
            [_point("hang_worker", "hung", 8, timeout_s=6.0), _point("ok", "fine", 8)],
            executor,
            suite="tiny",
            done=set(),
            record=lambda point, key, result: results.update({point.params["model"]: result}),
            max_memory_gb=None,
            timeout_s=None,
            progress=False,
        )
    finally:
        executor.close()
    assert results["hung"]["status"] == "timeout"
    assert "ray.kill" in results["hung"]["error"]
    assert 7.0 <= results["hung"]["wall_s"] < 40
    assert results["fine"]["status"] == "ok"


def test_ray_failures_map_onto_statuses(ray_cluster):
    from ray.exceptions import NodeDiedError, OutOfMemoryError, WorkerCrashedError

    from suites.harness.executors.ray_executor import ray_failure

    oom = ray_failure(OutOfMemoryError("Task was killed due to the node running low on memory"))
    assert oom == {
        "status": "oom",
        "error": "OutOfMemoryError: Task was killed due to the node running low on memory",
    }
    assert ray_failure(WorkerCrashedError())["status"] == "error"
    assert ray_failure(NodeDiedError("node 42 died"))["error"].endswith("node 42 died")


def slow_points(marks: Path) -> list[Point]:
    """Eight one-second points, each its own family (also built by the killed driver)."""
    return [_point("ok", f"m{i}", 8, marks=str(marks), sleep_s=1.0) for i in range(8)]


def test_a_driver_killed_mid_sweep_loses_no_row_and_a_rerun_measures_each_point_once(
    ray_cluster, tmp_path
):
    marks = tmp_path / "marks"
    driver = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
        from pathlib import Path
        from suites.harness.sweep import run_sweep
        from tests.suites.harness.test_ray_executor import CTX, _suite, slow_points
        from suites.harness.options import SweepOptions
        run_sweep(_suite(slow_points(Path({str(marks)!r}))), CTX, SweepOptions(
                  out_dir=Path({str(tmp_path)!r}), progress=False, executor="ray",
                  ray_address={ray_cluster.address_info["gcs_address"]!r}))
        """),
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    path, deadline = None, time.monotonic() + 120
    while path is None and time.monotonic() < deadline and driver.poll() is None:
        found = sorted(tmp_path.glob("tiny_cpu_*.jsonl"))
        if found and found[0].read_bytes().count(b"\n") >= 2:
            path = found[0]
        time.sleep(0.02)
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    assert path is not None, "the driver wrote no rows before the deadline"
    before = path.read_bytes()
    rows_before, _ = read_rows(path)
    points = slow_points(marks)
    assert 2 <= len(rows_before) < len(points)
    rerun = _sweep(points, tmp_path)
    assert rerun.path == path
    assert path.read_bytes().startswith(before)  # appended to, never rewritten
    rows, _ = read_rows(path)
    assert rows[: len(rows_before)] == rows_before  # no row lost
    ok_keys = [row["point_key"] for row in rows if row["status"] == "ok"]
    assert len(ok_keys) == len(set(ok_keys)) == len(points)  # each point ok exactly once
    started = marks.read_text().split()
    for row in rows_before:  # measured before the kill: not again
        assert started.count(f"{row['model']}:8") == 1


def test_results_finishing_at_the_same_moment_never_interleave_in_the_run_file(
    ray_cluster, tmp_path
):
    at = time.time() + 5  # both workers busy by then, then all finish together
    chars = 2**20
    points = [_point("blob_at", f"b{i}", i, at=at, blob_chars=chars) for i in range(1, 5)]
    run_file = _sweep(points, tmp_path)
    lines = run_file.path.read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) == len(points) + 1
    for line in lines[:-1]:
        row = json.loads(line)
        assert row["status"] == "ok", row["error"]
        assert row["blob"] == str(row["seq_len"]) * chars
