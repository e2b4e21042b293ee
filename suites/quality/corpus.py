"""Byte corpora for the byte-level language model, with a fixed train/validation split.

Default corpus: the source files of the running Python's standard library
(``sysconfig.get_paths()["stdlib"]``, ``*.py``, without site-packages / dist-packages), a
text every machine has offline. ``--data PATH`` takes any file or folder instead (e.g.
enwik8): a folder contributes every regular file below it, hidden ones (a name starting
with ".") left out.

The split is by file and deterministic: files sorted by relative path, and of n files
the ``max(1, round(n * validation_fraction))`` at evenly spaced sorted indices are the
validation set. A single file (or a folder with one file) is split by bytes instead: the
last ``validation_fraction`` of it is validation, as is usual for enwik8. The rule, the
file and byte counts and a fingerprint of the split (SHA-1 of every relative path, size
and side) go into every result row, so two results can be checked to share their data.
"""

from __future__ import annotations

import hashlib
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import torch

VALIDATION_FRACTION = 0.1
_NOT_STDLIB = ("site-packages", "dist-packages", "__pycache__")


@dataclass(frozen=True)
class ByteCorpus:
    """Train and validation bytes, each a uint8 tensor (N,), and how they were split."""

    source: str  # "python-stdlib-3.11" or the --data path as given
    root: str  # the folder or file read
    train: torch.Tensor  # (N_train,) uint8
    validation: torch.Tensor  # (N_val,) uint8
    train_files: int
    validation_files: int
    split_rule: str
    fingerprint: str

    def describe(self) -> dict[str, object]:
        """Row fields that identify the data and its split."""
        return {
            "corpus": self.source,
            "corpus_root": self.root,
            "corpus_split": self.split_rule,
            "corpus_fingerprint": self.fingerprint,
            "corpus_train_files": self.train_files,
            "corpus_validation_files": self.validation_files,
            "corpus_train_bytes": int(self.train.numel()),
            "corpus_validation_bytes": int(self.validation.numel()),
        }


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def corpus_files(data: str | Path | None = None) -> tuple[str, Path, list[Path]]:
    """(source name, root, files sorted by path) of a corpus, without reading them.

    Raises FileNotFoundError / ValueError naming ``--data`` for a missing path or a folder
    with nothing to read, so a command line can check ``--data`` cheaply before it runs.
    """
    if data is None:
        root = stdlib_root()
        files = [
            p
            for p in root.rglob("*.py")
            if p.is_file() and not set(p.relative_to(root).parts) & set(_NOT_STDLIB)
        ]
        source = f"python-stdlib-{sys.version_info.major}.{sys.version_info.minor}"
    else:
        root = Path(data).expanduser()
        if not root.exists():
            raise FileNotFoundError(
                f"--data {data}: no such file or folder; give a text "
                "file (e.g. enwik8) or a folder of files"
            )
        files = (
            [root]
            if root.is_file()
            else [
                p
                for p in root.rglob("*")
                if p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(root).parts)
            ]
        )
        source = str(data)
    if not files:
        raise ValueError(f"--data {root}: the folder holds no (non-hidden) files to read")
    files.sort(key=lambda p: p.relative_to(root).as_posix() if p != root else p.name)
    return source, root, files


def split_sizes(
    data: str | Path | None = None, validation_fraction: float = VALIDATION_FRACTION
) -> tuple[int, int]:
    """(train bytes, validation bytes) the split of :func:`load_corpus` will give, from
    the files' sizes alone (nothing is read)."""
    _, _, files = corpus_files(data)
    sizes = [path.stat().st_size for path in files]
    if len(files) == 1:
        cut = sizes[0] - round(sizes[0] * validation_fraction)
        return cut, sizes[0] - cut
    validation = _validation_indices(len(files), validation_fraction)
    held_out = sum(size for index, size in enumerate(sizes) if index in validation)
    return sum(sizes) - held_out, held_out


def check_split_room(data: str | Path, seq_len: int) -> None:
    """Refuse ``--data`` whose train or validation side is shorter than one window of
    ``seq_len`` bytes (every byte-LM point would fail on it)."""
    train, validation = split_sizes(data)
    if min(train, validation) < seq_len:
        raise ValueError(
            f"--data {data}: too small to split: train {train} bytes and validation "
            f"{validation} bytes, each must hold at least one window of seq_len={seq_len} "
            f"bytes (the validation side is the last {VALIDATION_FRACTION:.0%} of one file, "
            "or one file in ten of a folder)"
        )


def _validation_indices(n_files: int, fraction: float) -> set[int]:
    """Of n files sorted by path, the indices of the validation files (evenly spaced)."""
    n_val = max(1, round(n_files * fraction))
    return {int((j + 0.5) * n_files / n_val) for j in range(n_val)}


def load_corpus(
    data: str | Path | None = None, validation_fraction: float = VALIDATION_FRACTION
) -> ByteCorpus:
    """The stdlib corpus (``data`` None) or the file or folder at ``data``, split."""
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction={validation_fraction} must be in (0, 1)")
    source, root, files = corpus_files(data)
    if len(files) == 1:
        return _split_bytes(source, root, files[0], validation_fraction)
    return _split_files(source, root, files, validation_fraction)


def _split_files(source: str, root: Path, files: list[Path], fraction: float) -> ByteCorpus:
    val_indices = _validation_indices(len(files), fraction)
    n_val = len(val_indices)
    sides: dict[str, list[bytes]] = {"train": [], "validation": []}
    digest = hashlib.sha1()
    for index, path in enumerate(files):
        side = "validation" if index in val_indices else "train"
        content = path.read_bytes()
        sides[side].append(content)
        digest.update(f"{side}\t{path.relative_to(root).as_posix()}\t{len(content)}\n".encode())
    train, validation = (_tensor(b"".join(sides[s])) for s in ("train", "validation"))
    _check_nonempty(root, train, validation)
    rule = (
        f"by file: of {len(files)} files sorted by relative path, {n_val} at evenly "
        f"spaced indices (index = floor((j + 0.5) * n / {n_val})) are validation"
    )
    return ByteCorpus(
        source=source,
        root=str(root),
        train=train,
        validation=validation,
        train_files=len(files) - n_val,
        validation_files=n_val,
        split_rule=rule,
        fingerprint=digest.hexdigest(),
    )


def _split_bytes(source: str, root: Path, path: Path, fraction: float) -> ByteCorpus:
    content = path.read_bytes()
    cut = len(content) - round(len(content) * fraction)
    train, validation = _tensor(content[:cut]), _tensor(content[cut:])
    _check_nonempty(root, train, validation)
    digest = hashlib.sha1(f"bytes\t{path.name}\t{len(content)}\t{cut}\n".encode())
    rule = f"by bytes (one file): the first {cut} bytes train, the last {len(content) - cut}"
    return ByteCorpus(
        source=source,
        root=str(root),
        train=train,
        validation=validation,
        train_files=1,
        validation_files=1,
        split_rule=rule,
        fingerprint=digest.hexdigest(),
    )


def _tensor(content: bytes) -> torch.Tensor:
    return (
        torch.frombuffer(bytearray(content), dtype=torch.uint8)
        if content
        else torch.zeros(0, dtype=torch.uint8)
    )


def _check_nonempty(root: Path, train: torch.Tensor, validation: torch.Tensor) -> None:
    if train.numel() == 0 or validation.numel() == 0:
        raise ValueError(
            f"--data {root}: train ({train.numel()} bytes) and validation "
            f"({validation.numel()} bytes) must both be non-empty"
        )


def random_windows(
    data: torch.Tensor, batch: int, seq_len: int, generator: torch.Generator
) -> torch.Tensor:
    """``batch`` windows (B, seq_len) int64 at uniform random offsets drawn from ``generator``."""
    _check_room(data, seq_len, "train")
    starts = torch.randint(0, data.numel() - seq_len + 1, (batch,), generator=generator)
    return data[starts[:, None] + torch.arange(seq_len)].long()  # (B, L)


def validation_windows(data: torch.Tensor, seq_len: int, n_windows: int) -> torch.Tensor:
    """``n_windows`` windows (N, seq_len) int64 at evenly spaced offsets: a fixed eval set."""
    _check_room(data, seq_len, "validation")
    last = data.numel() - seq_len
    starts = (
        torch.linspace(0, last, n_windows).round().long()
        if n_windows > 1
        else (torch.zeros(1, dtype=torch.long))
    )
    return data[starts[:, None] + torch.arange(seq_len)].long()  # (N, L)


def _check_room(data: torch.Tensor, seq_len: int, side: str) -> None:
    if data.numel() < seq_len:
        raise ValueError(
            f"the {side} split has {data.numel()} bytes, fewer than "
            f"seq_len={seq_len}; use a larger --data or a shorter seq_len"
        )
