"""SweepOptions: one frozen object from the command line down to the sweep."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from suites.harness.options import SweepOptions
from suites.run import build_parser, options_from_args


def test_the_cli_builds_one_options_object_with_every_flag():
    argv = [
        "memory",
        "--out",
        "somewhere",
        "--fresh",
        "--max-memory-gb",
        "2.5",
        "--timeout",
        "30",
        "--threads",
        "1",
        "--no-progress",
        "--lengths",
        "1K,2^11",
    ]
    options = options_from_args(build_parser().parse_args(argv), ["python", "-m", "suites.run"])
    assert options == SweepOptions(
        out_dir=Path("somewhere"),
        fresh=True,
        max_memory_gb=2.5,
        timeout_s=30.0,
        threads=1,
        progress=False,
        lengths=(1024, 2048),
        argv=("python", "-m", "suites.run"),
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.fresh = False  # type: ignore[misc]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"executor": "slurm"}, "executor"),
        ({"ray_address": "auto"}, "ray_address"),
        ({"per_hardware": True}, "per_hardware"),
        ({"max_memory_gb": 0.0}, "max_memory_gb"),
        ({"timeout_s": -1.0}, "timeout_s"),
        ({"threads": 0}, "threads"),
    ],
)
def test_nonsense_is_refused_by_field_name(changes, field):
    with pytest.raises(ValueError, match=field):
        SweepOptions(**changes)


def test_rays_options_are_accepted_with_the_ray_executor():
    options = SweepOptions(executor="ray", ray_address="auto", per_hardware=True)
    assert options.ray_address == "auto" and options.per_hardware
