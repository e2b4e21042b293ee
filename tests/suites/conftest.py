"""Fixtures for the suites tests."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(scope="session")
def ray_cluster() -> Any:
    """A real two-CPU local Ray cluster, dashboard off, for the whole session; the test is
    skipped where ray is not installed. Yields ray.init's context (address_info)."""
    ray = pytest.importorskip("ray")
    context = ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=100 * 2**20,
        configure_logging=False,
    )
    yield context
    ray.shutdown()


@pytest.fixture(autouse=True)
def _process_settings_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    """``suites.run.main`` applies the points' process settings to os.environ
    (suites.harness.process_settings); each test gets back the environment it started with."""
    import os

    for name in ("OMP_WAIT_POLICY", "MALLOC_MMAP_THRESHOLD_"):
        if name in os.environ:
            monkeypatch.setenv(name, os.environ[name])
        else:
            monkeypatch.setenv(name, "")
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def _short_load_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--wait-policy auto`` samples the machine for a second before the first point; the
    CLI tests run dozens of tiny sweeps, so they sample for 20 ms (the rule is unchanged)."""
    from suites.harness import process_settings

    monkeypatch.setattr(process_settings, "SAMPLE_S", 0.02)
