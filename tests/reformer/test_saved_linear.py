"""Bytes a whole ReformerLM step saves for backward grow linearly in L (no L^2 term left)."""

from __future__ import annotations

import math

import torch

from reformer import ReformerConfig, ReformerLM
from suites.harness.saved_bytes import saved_bytes


def _saved(seq_len: int) -> int:
    config = ReformerConfig(
        vocab_size=32,
        d_model=32,
        n_heads=2,
        n_layers=2,
        d_ff=64,
        n_hashes=2,
        bucket_size=8,
        ff_chunks=4,
        axial_shape=(64, 64),
        max_seq_len=4096,
    )
    torch.manual_seed(0)
    model = ReformerLM(config)
    tokens = torch.randint(32, (1, seq_len), generator=torch.Generator().manual_seed(1))
    nbytes, loss = saved_bytes(lambda: model.loss(tokens))
    loss.backward()
    return nbytes


def test_saved_bytes_are_linear_in_length():
    lengths = (512, 1024, 2048, 4096)
    saved = [_saved(n) for n in lengths]
    slopes = [math.log2(b / a) for a, b in zip(saved, saved[1:], strict=False)]
    assert all(0.95 <= s <= 1.05 for s in slopes), (saved, slopes)
