"""Quality metrics: accuracy on the duplication task's second half, and bits per byte.

Both are computed from next-token predictions: logits (B, L, V) at position t predict
``tokens[:, t + 1]``. Sums (not means) are accumulated over batches, so the result over a
whole evaluation set weighs every scored token once, whatever the batching.

``arguments`` are the model's per-call attention arguments for every forward (e.g.
``{"n_hashes": 4}`` or ``{"exact": True}``: suites.quality.attention); none by default.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from suites.quality.data import second_half_mask

if TYPE_CHECKING:
    from reformer.generate import CachedLM


@dataclass
class Tally:
    """Running sums over scored tokens: cross-entropy (nats), correct predictions, count."""

    nats: float = 0.0
    correct: int = 0
    count: int = 0

    def add(
        self, logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None
    ) -> None:
        """logits (B, T, V), targets (B, T) int64, mask (T,) or (B, T) bool (None: all)."""
        if logits.shape[:-1] != targets.shape:
            raise ValueError(
                f"logits {tuple(logits.shape)} must be targets "
                f"{tuple(targets.shape)} plus a vocabulary dimension"
            )
        if mask is None:
            mask = torch.ones_like(targets, dtype=torch.bool)
        mask = mask.expand_as(targets)
        picked_logits, picked_targets = logits[mask].float(), targets[mask]  # (N, V), (N,)
        self.nats += float(F.cross_entropy(picked_logits, picked_targets, reduction="sum"))
        self.correct += int((picked_logits.argmax(dim=-1) == picked_targets).sum())
        self.count += int(picked_targets.numel())

    @property
    def accuracy(self) -> float:
        """Fraction of scored tokens whose argmax prediction is the target."""
        return self.correct / self.count if self.count else math.nan

    @property
    def loss(self) -> float:
        """Mean cross-entropy in nats per scored token."""
        return self.nats / self.count if self.count else math.nan

    @property
    def bits_per_token(self) -> float:
        """Mean cross-entropy in bits: bits per byte when every token is one byte."""
        return self.loss / math.log(2)


@torch.no_grad()
def evaluate_duplication(
    model: nn.Module, batches: Iterable[torch.Tensor], arguments: Mapping[str, Any] | None = None
) -> Tally:
    """Second-half accuracy and loss of ``model`` (tokens (B, L) -> logits (B, L, V))."""
    tally = Tally()
    for tokens in batches:
        logits = model(tokens, **(arguments or {}))[
            :, :-1
        ]  # (B, L-1, V): position t predicts t + 1
        tally.add(logits, tokens[:, 1:], second_half_mask(tokens.shape[1]).to(tokens.device))
    return tally


@torch.no_grad()
def evaluate_bytes(
    model: nn.Module, batches: Iterable[torch.Tensor], arguments: Mapping[str, Any] | None = None
) -> Tally:
    """Next-byte loss over every target of every window; ``tally.bits_per_token`` is bpb."""
    tally = Tally()
    for tokens in batches:
        tally.add(model(tokens, **(arguments or {}))[:, :-1], tokens[:, 1:])
    return tally


@torch.no_grad()
def evaluate_bytes_incremental(
    model: CachedLM, batches: Iterable[torch.Tensor], arguments: Mapping[str, Any] | None = None
) -> Tally:
    """As :func:`evaluate_bytes`, with every logit from teacher-forced incremental decoding
    (reformer.generate.incremental_logits: the first byte prefilled, then one step per
    byte), so the same targets are scored as in the full forward. Decoding takes only
    ``n_hashes`` of the arguments (the rounds its caches hash with)."""
    from reformer.generate import incremental_logits

    options = dict(arguments or {})
    n_hashes = options.pop("n_hashes", None)
    if options:
        raise ValueError(
            f"incremental decoding takes only n_hashes as an attention argument; got {options}"
        )
    tally = Tally()
    for tokens in batches:
        logits = incremental_logits(model, tokens, prompt_len=1, n_hashes=n_hashes)
        tally.add(logits[:, :-1], tokens[:, 1:])
    return tally
