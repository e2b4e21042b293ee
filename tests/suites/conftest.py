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
def _idle_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--wait-policy auto`` samples what other processes do for a second before the first
    point. The CLI tests run dozens of tiny sweeps, and what they check must not depend on
    the load around them (two sweeps of one test under different policies would write two
    files), so they read the machine as idle at once; tests of the rule itself patch it."""
    from suites.harness import process_settings

    monkeypatch.setattr(process_settings, "other_busy_cores", lambda seconds: 0.0)
