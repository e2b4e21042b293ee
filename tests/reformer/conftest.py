"""Fixtures shared by the fused CPU kernel's tests."""

from __future__ import annotations

import pytest

from reformer.lsh import dispatch
from reformer.lsh.cpu import build


@pytest.fixture
def fresh_build(monkeypatch, tmp_path):
    """An empty kernel cache (a private folder: 0700, whatever the umask), and the
    process's probe and warnings cleared before and after."""
    cache = tmp_path / "kernels"
    cache.mkdir()
    cache.chmod(0o700)
    monkeypatch.setenv("REFORMER_CACHE_DIR", str(cache))

    def clear():
        build._outcome.cache_clear()
        dispatch._warn_fallback.cache_clear()

    clear()
    yield cache
    clear()
