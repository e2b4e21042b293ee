"""Byte corpus loader: deterministic file-level split, --data file or folder, clear errors."""

import pytest
import torch

from suites.quality.corpus import load_corpus, random_windows, validation_windows


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "texts"
    (root / "sub").mkdir(parents=True)
    for i in range(10):
        (root / ("sub" if i % 2 else "") / f"f{i}.txt").write_bytes(bytes([65 + i]) * (20 + i))
    (root / ".hidden").write_bytes(b"secret")
    (root / ".git").mkdir()
    (root / ".git" / "objects").write_bytes(b"not text")
    return root


def test_split_is_by_file_deterministic_and_recorded(folder):
    first, second = load_corpus(folder), load_corpus(folder)
    assert torch.equal(first.train, second.train)
    assert torch.equal(first.validation, second.validation)
    assert first.fingerprint == second.fingerprint
    assert (first.train_files, first.validation_files) == (9, 1)
    # Sorted relative paths: f0 f2 f4 f6 f8 sub/f1 sub/f3 ... ; n=10, 1 validation file at
    # index floor(0.5 * 10) = 5, i.e. sub/f1 (20 + 1 bytes of "B").
    assert first.validation.tolist() == [66] * 21
    assert first.train.numel() + first.validation.numel() == sum(20 + i for i in range(10))
    described = first.describe()
    assert described["corpus_fingerprint"] == first.fingerprint
    assert "by file" in described["corpus_split"]


def test_hidden_files_are_left_out(folder):
    corpus = load_corpus(folder)
    everything = bytes(corpus.train.tolist() + corpus.validation.tolist())
    assert b"secret" not in everything and b"not text" not in everything


def test_a_changed_file_changes_the_fingerprint(folder):
    before = load_corpus(folder).fingerprint
    (folder / "f0.txt").write_bytes(b"longer content than before")
    assert load_corpus(folder).fingerprint != before


def test_a_single_file_is_split_by_bytes(tmp_path):
    path = tmp_path / "enwik.txt"
    path.write_bytes(bytes(range(100)))
    corpus = load_corpus(path)
    assert corpus.train.tolist() == list(range(90))
    assert corpus.validation.tolist() == list(range(90, 100))
    assert "by bytes" in corpus.split_rule


def test_bad_path_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        load_corpus(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no .*files"):
        load_corpus(tmp_path / "empty")


def test_stdlib_corpus_is_the_default():
    corpus = load_corpus()
    assert corpus.source.startswith("python-stdlib-")
    assert corpus.train_files > 100 and corpus.validation_files > 10
    assert corpus.validation.numel() > 100_000


def test_windows(folder):
    corpus = load_corpus(folder)
    windows = random_windows(corpus.train, 3, 8, torch.Generator().manual_seed(0))
    assert windows.shape == (3, 8) and windows.dtype == torch.int64
    fixed = validation_windows(corpus.validation, 8, 4)
    assert torch.equal(fixed, validation_windows(corpus.validation, 8, 4))
    assert fixed.shape == (4, 8)
    with pytest.raises(ValueError, match="seq_len"):
        validation_windows(corpus.validation, 1000, 2)
