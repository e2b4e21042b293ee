"""python -m suites.generate: a continuation from a byte-LM checkpoint, refusals by name."""

from __future__ import annotations

import pytest

from suites.generate import main
from suites.grids.quality import runs
from suites.harness.points import GridContext
from suites.quality.tasks import build_model
from suites.quality.train import save_checkpoint


@pytest.fixture
def checkpoint(tmp_path):
    run = next(
        r
        for r in runs(GridContext(device="cpu", mode="quick"))
        if r.task == "bytes" and r.shared_qk
    )
    path = tmp_path / "bytes_reformer-lsh-rev_test.pt"
    save_checkpoint(path, build_model(run), {"run": run.to_dict()})
    return path, run


def test_prints_a_continuation_and_its_speed(checkpoint, capsys):
    path, run = checkpoint
    assert main(["--checkpoint", str(path), "--prompt", "ab", "--max-new-tokens", "3"]) == 0
    out = capsys.readouterr().out
    assert "continuation:\nab" in out and "3 bytes in" in out and "tokens/s" in out


def test_a_prompt_longer_than_the_model_is_refused(checkpoint, capsys):
    path, run = checkpoint
    long_prompt = "x" * run.schedule.seq_len
    assert main(["--checkpoint", str(path), "--prompt", long_prompt]) == 2
    assert "--prompt is" in capsys.readouterr().err


def test_missing_checkpoint_is_refused(tmp_path, capsys):
    assert main(["--checkpoint", str(tmp_path / "none.pt")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_bad_flags_exit_2():
    with pytest.raises(SystemExit) as exited:
        main(["--temperature", "-1"])
    assert exited.value.code == 2
