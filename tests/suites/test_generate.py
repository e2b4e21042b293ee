"""python -m suites.generate: a continuation from a byte-LM checkpoint, refusals by name."""

from __future__ import annotations

import pytest

from suites.generate import main
from suites.grids.quality import runs
from suites.harness.suite import GridContext
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


@pytest.mark.parametrize(
    "content",
    [b"not a checkpoint at all", None],  # junk bytes; a foreign (valid) torch file
)
def test_a_junk_or_foreign_checkpoint_is_refused_without_unsafe_advice(tmp_path, capsys, content):
    import torch

    path = tmp_path / "bytes_other.pt"
    if content is None:
        torch.save({"weights": torch.zeros(2)}, path)  # someone else's file
    else:
        path.write_bytes(content)
    assert main(["--checkpoint", str(path)]) == 2
    err = capsys.readouterr().err
    assert "not a checkpoint of this project's quality suite" in err
    assert "never load one you do not trust" in err and "Traceback" not in err


def test_an_empty_prompt_and_a_top_k_above_the_vocabulary_are_refused(checkpoint, capsys):
    path, run = checkpoint
    assert main(["--checkpoint", str(path), "--prompt", ""]) == 2
    assert "--prompt is empty" in capsys.readouterr().err
    assert main(["--checkpoint", str(path), "--top-k", "100000"]) == 2
    assert "--top-k 100000" in capsys.readouterr().err


def test_a_continuation_cut_to_the_models_length_says_so(checkpoint, capsys):
    path, run = checkpoint
    assert main(["--checkpoint", str(path), "--prompt", "ab", "--max-new-tokens", "100000"]) == 0
    captured = capsys.readouterr()
    new = run.schedule.seq_len - 2
    assert f"so {new} are generated" in captured.err and f"{new} bytes in" in captured.out
