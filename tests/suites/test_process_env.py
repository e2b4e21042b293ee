"""The process settings points run under (OpenMP wait policy, glibc mmap threshold): the
variables set, the values refused, and a real child reporting what it ran under, also
after the settings change (a new fork server)."""

from __future__ import annotations

import os

import pytest

from suites.harness import process_env
from suites.harness.isolation import run_point
from suites.run import build_parser
from tests.suites.test_harness import MODULE


def test_variables_for_each_choice():
    assert process_env.environment_variables("passive", 4096) == {
        "OMP_WAIT_POLICY": "PASSIVE",
        "MALLOC_MMAP_THRESHOLD_": "4096",
    }
    assert process_env.environment_variables("active", 0) == {
        "OMP_WAIT_POLICY": "ACTIVE",
        "MALLOC_MMAP_THRESHOLD_": None,
    }
    # inherit: the shell's OMP_WAIT_POLICY is left alone.
    assert "OMP_WAIT_POLICY" not in process_env.environment_variables("inherit", 1)


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
        process_env.environment_variables(policy, threshold)


def test_cli_defaults_and_refusals(capsys):
    args = build_parser().parse_args(["memory"])
    assert (args.wait_policy, args.mmap_threshold) == (
        process_env.DEFAULT_WAIT_POLICY,
        process_env.DEFAULT_MMAP_THRESHOLD,
    )
    for bad in (["--mmap-threshold", "-1"], ["--wait-policy", "spin"]):
        with pytest.raises(SystemExit) as exc:
            build_parser().parse_args(["memory", *bad])
        assert exc.value.code == 2
    assert "argument --mmap-threshold: must be a whole number >= 0" in capsys.readouterr().err


def test_apply_sets_and_clears(monkeypatch):
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    process_env.apply("inherit", 0)
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
    assert "MALLOC_MMAP_THRESHOLD_" not in os.environ
    assert process_env.child_settings() == {
        "omp_wait_policy": "ACTIVE",
        "malloc_mmap_threshold": None,
    }
    process_env.apply("passive", 1 << 22)
    assert process_env.child_settings() == {
        "omp_wait_policy": "PASSIVE",
        "malloc_mmap_threshold": 1 << 22,
    }


def _child_row() -> dict:
    params = {"model": "a", "pass": "fwd", "seq_len": 8, "batch": 1, "device": "cpu"}
    return run_point(f"{MODULE}:ok_runner", params, {}, timeout_s=60, max_memory_gb=None)


def test_a_child_runs_under_the_applied_settings_even_after_they_change():
    process_env.apply("passive", 1 << 22)
    row = _child_row()
    assert row["status"] == "ok"
    assert (row["omp_wait_policy"], row["malloc_mmap_threshold"]) == ("PASSIVE", 1 << 22)
    # The fork server the first child came from read the old values when it started.
    process_env.apply("active", 0)
    row = _child_row()
    assert (row["omp_wait_policy"], row["malloc_mmap_threshold"]) == ("ACTIVE", None)
