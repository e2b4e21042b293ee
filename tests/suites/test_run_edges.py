"""The CLI at its edges: a reader that leaves early."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

import suites.run as run_module
from suites.harness import exits
from suites.harness.environment import REPO_ROOT
from suites.harness.options import SweepOptions
from suites.harness.points import Point
from suites.harness.sweep import run_sweep
from suites.rows.store import RunFile
from suites.run import main
from tests.suites.test_run import tiny  # noqa: F401 (a fixture)
from tests.suites.tiny import CTX, _marks, _suite


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


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--timeout", "1e10"], "--timeout"),
        (["--threads", "99999999999999"], "--threads"),
        (["--mmap-threshold", str(32 * 2**20 + 1)], "--mmap-threshold"),
        (["--seeds", "100000000", "--list"], "--seeds"),
    ],
)
def test_values_too_large_to_run_are_refused_before_any_point(tiny, capsys, args, flag):  # noqa: F811
    with pytest.raises(SystemExit) as exc:
        main(["tiny", "--no-progress", *args])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}:" in err and "must be at most" in err
    assert _marks(tiny) == []


def test_an_empty_out_is_refused_not_read_as_the_current_folder(tiny, capsys):  # noqa: F811
    with pytest.raises(SystemExit) as exc:
        main(["tiny", "--no-progress", "--out", ""])
    assert exc.value.code == 2
    assert "argument --out: is empty" in capsys.readouterr().err
    assert _marks(tiny) == []


def test_an_inherited_hard_limit_is_named_in_a_dead_childs_error_and_the_summary(
    tmp_path, monkeypatch
):
    """`ulimit -v 720000`: every child dies before it can report, with exit code 1. Its
    error and the summary name the inherited limit, instead of only the cap asked for."""
    from suites.harness import isolation, summary

    limit = 720000 * 1024
    monkeypatch.setattr(isolation, "inherited_address_limit", lambda: limit)
    monkeypatch.setattr(summary, "inherited_address_limit", lambda: limit)
    dead = isolation._death(1)
    assert dead["status"] == "error" and "hard address-space limit of 0.69 GiB" in dead["error"]
    run_file = RunFile(tmp_path / "tiny.jsonl", [{"point_key": "k", **dead}], [])
    text = summary.summary(_suite([]), CTX, run_file, 16.0)
    assert "inherited hard address-space limit (ulimit -v): 0.69 GiB per process" in text


def test_no_progress_keeps_one_line_per_point_with_the_reason_it_did_not_run(tmp_path):
    """--no-progress turns the bar off, not the record of what ran; a skipped point's line
    says why (it was only in its row), and runners are told to draw no bars of their own
    (the quality suite's training bars)."""
    import dataclasses

    from tests.suites.tiny import CTX, _suite

    params = {"model": "a", "phase": "fwd", "batch": 1, "device": "cpu", "seq_len": 8}
    quiet = Point(params=params, runner="tests.suites.point_runners:progress_option")
    skipped = dataclasses.replace(
        quiet, params=params | {"model": "b"}, options={"skip_reason": "transformers not installed"}
    )
    log = io.StringIO()
    run_file = run_sweep(
        _suite([quiet, skipped]), CTX, SweepOptions(out_dir=tmp_path, progress=False), log=log
    )
    assert "a fwd L=8: ok" in log.getvalue()
    assert "b fwd L=8: skipped (transformers not installed)" in log.getvalue()
    rows = {row["model"]: row for row in run_file.rows}
    assert rows["a"]["impl"] == "progress=False" and rows["b"]["status"] == "skipped"


def test_a_reader_that_closes_the_pipe_early_gets_no_traceback():
    proc = subprocess.Popen(
        [sys.executable, "-m", "suites.run", "--list", "--quick"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()  # `| head` that has read enough
    err = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert "Traceback" not in err and "BrokenPipeError" not in err
    assert proc.returncode == 0
