"""The process settings points run under (OpenMP wait policy, glibc mmap threshold): the
variables set, the values refused, and a real child reporting what it ran under, also
after the settings change (a new fork server)."""

from __future__ import annotations

import os
import time

import pytest

from suites.harness import process_settings
from suites.harness.isolation import run_point
from suites.harness.process_settings import other_busy_cores as real_other_busy_cores
from suites.run import build_parser
from tests.suites.tiny import MODULE


def test_variables_for_each_choice():
    assert process_settings.environment_variables("passive", 4096) == {
        "OMP_WAIT_POLICY": "PASSIVE",
        "MALLOC_MMAP_THRESHOLD_": "4096",
    }
    assert process_settings.environment_variables("active", 0) == {
        "OMP_WAIT_POLICY": "ACTIVE",
        "MALLOC_MMAP_THRESHOLD_": None,
    }
    # inherit: the shell's OMP_WAIT_POLICY is left alone.
    assert "OMP_WAIT_POLICY" not in process_settings.environment_variables("inherit", 1)


@pytest.mark.parametrize(
    ("policy", "threshold", "field"),
    [
        ("spin", 0, "wait_policy"),
        ("passive", -1, "mmap_threshold"),
        ("passive", 1.5, "mmap_threshold"),
    ],
)
def test_bad_settings_name_the_field(policy, threshold, field):
    with pytest.raises(ValueError, match=field):
        process_settings.environment_variables(policy, threshold)


def test_cli_defaults_and_refusals(capsys):
    args = build_parser().parse_args(["memory"])
    assert (args.wait_policy, args.mmap_threshold) == (
        process_settings.DEFAULT_WAIT_POLICY,
        process_settings.DEFAULT_MMAP_THRESHOLD,
    )
    for bad in (["--mmap-threshold", "-1"], ["--wait-policy", "spin"]):
        with pytest.raises(SystemExit) as exc:
            build_parser().parse_args(["memory", *bad])
        assert exc.value.code == 2
    assert "argument --mmap-threshold: must be a whole number >= 0" in capsys.readouterr().err


def test_apply_sets_and_clears(monkeypatch):
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    process_settings.apply("inherit", 0)
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
    assert "MALLOC_MMAP_THRESHOLD_" not in os.environ
    assert process_settings.child_settings() == {
        "omp_wait_policy": "ACTIVE",
        "malloc_mmap_threshold": None,
    }
    process_settings.apply("passive", 1 << 22)
    assert process_settings.child_settings() == {
        "omp_wait_policy": "PASSIVE",
        "malloc_mmap_threshold": 1 << 22,
    }


def _child_row() -> dict:
    params = {"model": "a", "pass": "fwd", "seq_len": 8, "batch": 1, "device": "cpu"}
    return run_point(f"{MODULE}:ok_runner", params, {}, timeout_s=60, max_memory_gb=None)


def test_a_child_runs_under_the_applied_settings_even_after_they_change():
    process_settings.apply("passive", 1 << 22)
    row = _child_row()
    assert row["status"] == "ok"
    assert (row["omp_wait_policy"], row["malloc_mmap_threshold"]) == ("PASSIVE", 1 << 22)
    # The fork server the first child came from read the old values when it started.
    process_settings.apply("active", 0)
    row = _child_row()
    assert (row["omp_wait_policy"], row["malloc_mmap_threshold"]) == ("ACTIVE", None)


def test_other_process_settings_start_their_own_run_file(tmp_path):
    """Times and peaks depend on the settings, so a run file holds one set of them; a
    sweep under the same settings resumes it."""
    from tests.suites.tiny import _marks, _point
    from tests.suites.tiny import _sweep_to as _sweep

    marks = tmp_path / "marks"
    points = [_point("ok_runner", "a", 8, marks)]
    process_settings.apply("passive", 1 << 22)
    first = _sweep(points, tmp_path)
    process_settings.apply("active", 0)
    other = _sweep(points, tmp_path)
    process_settings.apply("passive", 1 << 22)
    again = _sweep(points, tmp_path)
    assert other.path != first.path and again.path == first.path
    assert _marks(marks) == ["a:8", "a:8"]
    assert [(r["omp_wait_policy"], r["malloc_mmap_threshold"]) for r in other.rows] == [
        ("ACTIVE", None)
    ]


def test_a_file_from_before_the_settings_is_read_as_unset():
    from suites.rows.store import holds_grid

    grid = {"mode": "default", "grid_id": "g", "omp_wait_policy": None}
    old = [{"mode": "default", "grid_id": "g"}]
    assert holds_grid(old, grid)
    assert not holds_grid(old, {**grid, "omp_wait_policy": "PASSIVE"})
    # Rows older still (no mode) are not resumed under settings they did not record.
    assert not holds_grid([{"model": "m"}], {**grid, "omp_wait_policy": "PASSIVE"})
    assert holds_grid([{"model": "m"}], grid)


def test_auto_sleeps_only_on_a_busy_machine():
    resolve = process_settings.resolve_wait_policy
    assert resolve("auto", load=1.0, n_cpus=2) == "passive"  # one of two cores taken
    assert resolve("auto", load=0.4, n_cpus=2) == "inherit"
    assert resolve("auto", load=1.0, n_cpus=8) == "inherit"
    assert resolve("active", load=9.0, n_cpus=1) == "active"
    assert resolve("auto") in ("passive", "inherit")  # this machine's own load


def test_the_cli_says_when_auto_picks_passive_and_the_rows_record_it(tmp_path, monkeypatch, capsys):
    import json

    import suites.run as run_module
    from tests.suites.tiny import _point, _suite

    suite = _suite([_point("ok_runner", "a", 8)], name="tiny")
    monkeypatch.setattr(run_module, "load_suites", lambda: {"tiny": suite})
    monkeypatch.setattr(run_module, "get_suite", lambda name: suite)
    monkeypatch.setattr(process_settings, "other_busy_cores", lambda seconds: 64.0)
    assert run_module.main(["tiny", "--out", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "other processes keep 64.0 cores busy" in out
    assert "the machine is busy, so points run with OMP_WAIT_POLICY=PASSIVE" in out
    (written,) = tmp_path.glob("tiny_cpu_*.jsonl")
    (row,) = (json.loads(line) for line in written.read_text().splitlines())
    assert (row["omp_wait_policy"], row["malloc_mmap_threshold"]) == ("PASSIVE", 1 << 22)


def test_auto_reads_what_other_processes_do_now_not_a_decaying_average(monkeypatch):
    # Two cores' worth of CPU time spent by the machine in the second sampled, one of them by
    # this process: one core busy with other work. The 1-minute average (64) is ignored.
    machine = iter([100.0, 102.0])
    own = iter([5.0, 6.0])
    clock = iter([0.0, 1.0])
    monkeypatch.setattr(process_settings, "other_busy_cores", real_other_busy_cores)
    monkeypatch.setattr(process_settings, "_machine_busy_s", lambda: next(machine))
    monkeypatch.setattr(process_settings, "_own_cpu_s", lambda: next(own))
    monkeypatch.setattr(process_settings.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(process_settings.time, "sleep", lambda seconds: None)
    monkeypatch.setattr(os, "getloadavg", lambda: (64.0, 64.0, 64.0))
    assert process_settings.current_load() == pytest.approx(1.0)


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="reads Linux's /proc/stat")
def test_a_spinning_process_is_seen(monkeypatch):
    import subprocess
    import sys

    spin = "import time\nend = time.time() + 5\nwhile time.time() < end: pass\n"
    child = subprocess.Popen([sys.executable, "-c", spin])
    try:
        time.sleep(0.3)  # started and spinning
        assert real_other_busy_cores(1.0) >= 0.5
    finally:
        child.kill()
        child.wait()
