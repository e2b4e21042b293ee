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
