"""Shared test setup."""

import pytest
import torch

from reformer.lsh.dispatch import WARNED_ENV


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models run faster on one intra-op thread, and a busy machine cannot stall it
    (with two threads every small op waits for both to be scheduled)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _no_fallback_warned(monkeypatch):
    """Each test starts as a fresh process tree would: no fallback warned about yet
    (reformer.lsh.dispatch notes those it warned about in the environment), and the
    environment is given back as it was after."""
    monkeypatch.setenv(WARNED_ENV, "")
    monkeypatch.delenv(WARNED_ENV)
