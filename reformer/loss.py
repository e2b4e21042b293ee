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
_IGNORED = -100  # cross_entropy's ignore_index: a padded target


def check_loss_tokens(tokens: torch.Tensor) -> None:
    """Raise ValueError unless tokens is (batch, seq_len >= 2): callers run it before the
    forward so a bad batch fails before any work."""
    if tokens.dim() != 2 or tokens.shape[1] < 2:
        raise ValueError(
            f"loss needs tokens (batch, seq_len >= 2): a token and its "
            f"successor; got tokens of shape {tuple(tokens.shape)}"
        )


def _targets(
    hidden: torch.Tensor, tokens: torch.Tensor, target_mask: torch.Tensor | None
) -> torch.Tensor:
    """Checked inputs -> the targets tokens[:, 1:] (B, L-1), padded ones set to ignored."""
    check_loss_tokens(tokens)
    if hidden.shape[:2] != tokens.shape:
        raise ValueError(
            f"hidden {tuple(hidden.shape)} must be (batch, seq_len, d) for "
            f"tokens {tuple(tokens.shape)}"
        )
    targets = tokens[:, 1:]
    if target_mask is None:
        return targets
    if target_mask.dtype != torch.bool or target_mask.shape != tokens.shape:
        raise ValueError(
            f"padding_mask must be (B, L) = {tuple(tokens.shape)} torch.bool, True at real "
            f"tokens; got {tuple(target_mask.shape)} {target_mask.dtype}"
        )
    return targets.masked_fill(~target_mask[:, 1:], _IGNORED)


def next_token_loss_reference(
    head: nn.Module,
    hidden: torch.Tensor,
    tokens: torch.Tensor,
    *,
    target_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean cross-entropy of head(hidden[:, :-1]) (B, L-1, V) against tokens[:, 1:], over
    the targets ``target_mask`` (B, L) bool marks real (all if None)."""
    targets = _targets(hidden, tokens, target_mask)
    logits = head(hidden[:, :-1])
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=_IGNORED)


def _slice_loss_sum(head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logits = head(hidden).flatten(0, 1)
    return F.cross_entropy(logits, targets.flatten(), reduction="sum", ignore_index=_IGNORED)


def next_token_loss(
    head: nn.Module,
    hidden: torch.Tensor,
    tokens: torch.Tensor,
    *,
    chunk_tokens: int = LOSS_CHUNK_TOKENS,
    target_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean next-token cross-entropy; hidden (B, L, d), tokens (B, L) -> scalar, over the
    targets ``target_mask`` (B, L) bool marks real (a padding mask; all if None).

    Equal to :func:`next_token_loss_reference`, value and gradients (up to float
    summation order). Sequences of at most ``chunk_tokens`` tokens take the one-shot path.
    """
    targets = _targets(hidden, tokens, target_mask)
    if chunk_tokens < 1:
        raise ValueError(f"chunk_tokens={chunk_tokens} must be >= 1")
    batch, length = tokens.shape
    if batch * (length - 1) <= chunk_tokens:
        return next_token_loss_reference(head, hidden, tokens, target_mask=target_mask)
    step = max(1, chunk_tokens // batch)  # positions per slice
    parts = []
    for start in range(0, length - 1, step):
        stop = min(start + step, length - 1)
        args = (head, hidden[:, start:stop], targets[:, start:stop])
        # Under no_grad there is nothing to recompute, so no checkpoint is needed.
        parts.append(
            checkpoint(_slice_loss_sum, *args, use_reentrant=False)
            if torch.is_grad_enabled()
            else _slice_loss_sum(*args)
        )
    count = batch * (length - 1) if target_mask is None else (targets != _IGNORED).sum()
    return torch.stack(parts).sum() / count
