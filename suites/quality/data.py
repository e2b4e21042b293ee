"""The duplication task of the Reformer paper (sec. 5, Table 2): sequences 0 w 0 w.

A sequence of even length L is ``[0, w_1 .. w_{h-1}, 0, w_1 .. w_{h-1}]`` with h = L/2 and
symbols w_i drawn uniformly from 1 .. vocab_size-1 (the paper: 1..127, vocabulary 128).
The first half is unpredictable; the second copy of w is predictable only by looking back
exactly h positions, which is what attention has to learn.

Loss and accuracy are taken on the second half only, as in the paper. The mask is over
next-token *targets* (``tokens[:, 1:]``) and covers the second copy of w, positions
h+1 .. L-1: the separator at position h is left out because it is predictable from the
position alone, without any attention, so it would only inflate the accuracy.
"""

from __future__ import annotations

import torch

VOCAB_SIZE = 128  # the paper's vocabulary: symbol 0 separates, 1..127 are content


def check_seq_len(seq_len: int) -> None:
    if not isinstance(seq_len, int) or seq_len < 4 or seq_len % 2:
        raise ValueError(f"seq_len={seq_len!r} must be an even int >= 4 (sequences are 0w0w)")


def duplication_batch(
    batch: int, seq_len: int, generator: torch.Generator, vocab_size: int = VOCAB_SIZE
) -> torch.Tensor:
    """Tokens (batch, seq_len) int64, each row 0 w 0 w with w (seq_len/2 - 1) symbols.

    Symbols come from ``generator`` (a CPU torch.Generator), so a seed fixes the data.
    """
    check_seq_len(seq_len)
    if batch < 1:
        raise ValueError(f"batch={batch!r} must be a positive int")
    if vocab_size < 2:
        raise ValueError(f"vocab_size={vocab_size!r} must be >= 2 (0 separates, 1.. are symbols)")
    half = seq_len // 2
    w = torch.randint(1, vocab_size, (batch, half - 1), generator=generator)  # (B, h-1)
    zeros = torch.zeros(batch, 1, dtype=torch.int64)
    return torch.cat([zeros, w, zeros, w], dim=1)  # (B, L)


def second_half_mask(seq_len: int) -> torch.Tensor:
    """Bool (seq_len - 1,): True where target ``tokens[:, t + 1]`` is in the second copy of w.

    Index t of the mask is the prediction made at position t for the token at t + 1, so
    it is True for t = h .. L-2 (targets h+1 .. L-1), h = seq_len / 2.
    """
    check_seq_len(seq_len)
    targets = torch.arange(1, seq_len)
    return targets > seq_len // 2
