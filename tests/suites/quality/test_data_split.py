"""--data too small to split is refused before any point runs."""

from __future__ import annotations

import pytest

from suites.run import main


@pytest.mark.parametrize("layout", ["file", "folder"])
def test_data_too_small_to_split_is_refused_before_any_point(tmp_path, capsys, layout):
    if layout == "file":
        data = tmp_path / "tiny.txt"
        data.write_bytes(b"x" * 100)  # 10 validation bytes: less than one 32-byte window
    else:
        data = tmp_path / "corpus"
        data.mkdir()
        for index in range(3):
            (data / f"{index}.txt").write_bytes(b"y" * (1000 if index != 1 else 8))
    with pytest.raises(SystemExit) as exc:
        main(["quality", "--quick", "--data", str(data), "--out", str(tmp_path / "out")])
    assert exc.value.code == 2
    assert "too small to split" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.jsonl"))


def test_split_sizes_agree_with_the_split_itself(tmp_path):
    from suites.quality.corpus import load_corpus, split_sizes

    for index in range(12):
        (tmp_path / f"{index:02d}.txt").write_bytes(bytes(range(index * 7 % 50 + 1)))
    corpus = load_corpus(tmp_path)
    assert split_sizes(tmp_path) == (corpus.train.numel(), corpus.validation.numel())
