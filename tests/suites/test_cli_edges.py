"""The CLI at its edges: a reader that leaves early."""

from __future__ import annotations

import io
import sys

import suites.run as run_module
from suites.harness import exits
from suites.run import main
from tests.suites.test_first_run import tiny  # noqa: F401 (a fixture)


class _ClosedPipe(io.StringIO):
    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_sweep_whose_output_pipe_closes_is_not_a_success(tiny, tmp_path, monkeypatch):  # noqa: F811
    """`python -m suites.run ... | head -3`: the sweep cannot go on printing, so it stops,
    and the exit status says it did not finish (a rerun resumes) instead of 0."""
    silenced = []
    monkeypatch.setattr(run_module, "_silence_output", lambda: silenced.append(True))
    monkeypatch.setattr(sys, "stdout", _ClosedPipe())
    assert main(["tiny", "--no-progress", "--out", str(tmp_path)]) == exits.PIPE_CLOSED == 141
    assert silenced


def test_a_listing_cut_short_by_its_reader_is_still_a_success(tiny, monkeypatch):  # noqa: F811
    monkeypatch.setattr(run_module, "_silence_output", lambda: None)
    monkeypatch.setattr(sys, "stdout", _ClosedPipe())
    monkeypatch.setattr(sys, "argv", ["suites.run", "--list"])
    assert run_module._entry() == exits.OK
