"""Next-token cross-entropy computed a slice of the sequence at a time.

At long L the LM head's logits dominate a Reformer's memory: (B, L, vocab) float32 is
1 GiB at L = 2^20 with a 256-byte vocabulary, and cross-entropy keeps its log-softmax
(another 1 GiB) for backward while the gradient of the logits needs a third. Here the
head and the loss run on slices of at most ``chunk_tokens`` (batch x positions) under
activation checkpointing, so backward keeps only the hidden states (already held) and
recomputes one slice's logits at a time: the same chunking idea the Reformer applies to
its feed-forward (paper sec. 4, "Chunking"), applied to the output layer.

The plain one-shot loss is the slow, obvious twin (:func:`next_token_loss_reference`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

LOSS_CHUNK_TOKENS = 16384  # 16 MiB of logits per slice at a 256-symbol vocabulary


def check_loss_tokens(tokens: torch.Tensor) -> None:
    """Raise ValueError unless tokens is (batch, seq_len >= 2): callers run it before the
    forward so a bad batch fails before any work."""
    if tokens.dim() != 2 or tokens.shape[1] < 2:
        raise ValueError(
            f"loss needs tokens (batch, seq_len >= 2): a token and its "
            f"successor; got tokens of shape {tuple(tokens.shape)}"
        )


def _check(hidden: torch.Tensor, tokens: torch.Tensor) -> None:
    check_loss_tokens(tokens)
    if hidden.shape[:2] != tokens.shape:
        raise ValueError(
            f"hidden {tuple(hidden.shape)} must be (batch, seq_len, d) for "
            f"tokens {tuple(tokens.shape)}"
        )


def next_token_loss_reference(
    head: nn.Module, hidden: torch.Tensor, tokens: torch.Tensor
) -> torch.Tensor:
    """Mean cross-entropy of head(hidden[:, :-1]) (B, L-1, V) against tokens[:, 1:]."""
    _check(hidden, tokens)
    logits = head(hidden[:, :-1])
    return F.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten())


def _slice_loss_sum(head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(head(hidden).flatten(0, 1), targets.flatten(), reduction="sum")


def next_token_loss(
    head: nn.Module,
    hidden: torch.Tensor,
    tokens: torch.Tensor,
    *,
    chunk_tokens: int = LOSS_CHUNK_TOKENS,
) -> torch.Tensor:
    """Mean next-token cross-entropy; hidden (B, L, d), tokens (B, L) -> scalar.

    Equal to :func:`next_token_loss_reference`, value and gradients (up to float
    summation order). Sequences of at most ``chunk_tokens`` tokens take the one-shot path.
    """
    _check(hidden, tokens)
    if chunk_tokens < 1:
        raise ValueError(f"chunk_tokens={chunk_tokens} must be >= 1")
    batch, length = tokens.shape
    if batch * (length - 1) <= chunk_tokens:
        return next_token_loss_reference(head, hidden, tokens)
    step = max(1, chunk_tokens // batch)  # positions per slice
    parts = []
    for start in range(0, length - 1, step):
        stop = min(start + step, length - 1)
        args = (head, hidden[:, start:stop], tokens[:, start + 1 : stop + 1])
        # Under no_grad there is nothing to recompute, so no checkpoint is needed.
        parts.append(
            checkpoint(_slice_loss_sum, *args, use_reentrant=False)
            if torch.is_grad_enabled()
            else _slice_loss_sum(*args)
        )
    return torch.stack(parts).sum() / (batch * (length - 1))
