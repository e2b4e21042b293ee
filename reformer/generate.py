"""Generation: prefill, one step per new token, and sampling (shared by ReformerLM and the
Transformer baseline).

A model that generates offers ``new_caches(batch, capacity, like)`` (one cache per layer,
reformer.decode) and ``decode(tokens, caches)``: the logits (B, vocab) of the last of the
new positions ``tokens`` (B, n), which it appends to the caches. Prefill is ``decode`` of
the whole prompt on empty caches (the normal forward, filling them); every later token is
``decode`` of one position. Dropout is off throughout (inference).

A batch of prompts decodes together, one step per token for the whole batch. Prompts of
different lengths come left-padded with an ``attention_mask`` (B, P) bool, True at real
tokens (HF's decoder-only convention), which ``decode`` takes on the prefill: padded
positions never enter a cache's key set and each row counts positions from its own first
real token (docs/generation.md: what then equals generating each row alone).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any, Protocol

import torch

from reformer.decode import capacity_needed, check_causal, check_lengths, left_padding


class CachedLM(Protocol):
    config: Any
    training: bool

    def new_caches(self, batch: int, capacity: int, like: torch.Tensor, **options: Any) -> list: ...

    def decode(
        self, tokens: torch.Tensor, caches: list, padding_mask: torch.Tensor | None = None
    ) -> torch.Tensor: ...

    def __call__(self, tokens: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor: ...

    def train(self, mode: bool = True) -> Any: ...

    def parameters(self) -> Iterator[torch.nn.Parameter]: ...


class GenerationMixin:
    """``generate`` for a model that offers ``new_caches`` and ``decode`` (see above)."""

    def generate(
        self,
        prompt: torch.Tensor,
        max_new_tokens: int,
        *,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
        use_cache: bool = True,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """prompt (B, P) int64 -> (B, P + max_new_tokens): the prompt and its continuation.

        ``temperature`` 0 is greedy (argmax); otherwise logits / temperature are sampled,
        from the ``top_k`` largest only when given, with ``generator`` (the global RNG if
        None). ``use_cache=False`` recomputes the whole context for every token (what no
        cache costs).

        ``attention_mask`` (B, P) bool, True at real tokens, for prompts of different
        lengths, left-padded (each row: False then True, at least one True; padded ids
        must still be valid ids, and are never attended to). Row b's continuation follows
        its last real token, positions counted from its first; the returned rows keep
        their padding. Needs ``use_cache=True``. P, padding included, counts against
        max_seq_len.
        """
        model: CachedLM = self  # type: ignore[assignment]  # the model class supplies it
        check_generate_args(model, prompt, max_new_tokens, temperature, top_k, generator, use_cache)
        if attention_mask is not None:
            left_padding(attention_mask, tuple(prompt.shape))  # refused by name if wrong
            if not use_cache:
                raise ValueError(
                    "attention_mask needs use_cache=True (the recomputing path has no "
                    "per-row positions); got use_cache=False"
                )
        if max_new_tokens == 0:
            return prompt.clone()
        # The whole output, filled in place: one column per token, no copy of the past.
        length = prompt.shape[1]
        dtype = torch.promote_types(prompt.dtype, torch.int64)  # sampled ids are int64
        tokens = prompt.new_empty(prompt.shape[0], length + max_new_tokens, dtype=dtype)
        tokens[:, :length] = prompt
        with _inference(model):
            if use_cache:
                capacity = capacity_needed(length, max_new_tokens)
                caches = model.new_caches(prompt.shape[0], capacity, _like(model))
                logits = model.decode(prompt, caches, attention_mask)
            else:
                logits = model(prompt)[:, -1]
            for index in range(max_new_tokens):
                column = tokens[:, length + index : length + index + 1]  # (B, 1)
                column[:, 0] = sample(logits, temperature, top_k, generator)
                if index + 1 == max_new_tokens:
                    break
                if use_cache:
                    logits = model.decode(column, caches)
                else:
                    logits = model(tokens[:, : length + index + 1])[:, -1]
        return tokens


def incremental_logits(
    model: CachedLM, tokens: torch.Tensor, prompt_len: int, *, n_hashes: int | None = None
) -> torch.Tensor:
    """Teacher-forced decoding: logits (B, L - prompt_len + 1, vocab) at positions
    prompt_len - 1 .. L - 1 of tokens (B, L), the first from the prefill of
    tokens[:, :prompt_len], each later one from a one-token step. ``n_hashes``: the hash
    rounds of LSH caches for this call (the model's config.n_hashes if None)."""
    check_causal(model.config)
    length = tokens.shape[1]
    if not 1 <= prompt_len <= length:
        raise ValueError(f"prompt_len={prompt_len} must be in [1, seq_len={length}]")
    check_lengths(prompt_len, length - prompt_len, model.config.max_seq_len)
    with _inference(model):
        options = {} if n_hashes is None else {"n_hashes": n_hashes}
        caches = model.new_caches(tokens.shape[0], length, _like(model), **options)
        out = [model.decode(tokens[:, :prompt_len], caches)]
        for position in range(prompt_len, length):
            out.append(model.decode(tokens[:, position : position + 1], caches))
    return torch.stack(out, dim=1)


def sample(
    logits: torch.Tensor,
    temperature: float,
    top_k: int | None,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """Next tokens (B,) from logits (B, vocab): argmax at temperature 0, else sampled."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    scaled = logits.float() / temperature
    if top_k is not None:
        kth = torch.topk(scaled, top_k, dim=-1).values[:, -1:]
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    probs = torch.softmax(scaled, dim=-1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


def check_generate_args(model, prompt, max_new_tokens, temperature, top_k, generator, use_cache):
    """Raise ValueError naming the argument and what it allows."""
    config = model.config
    check_causal(config)
    if not isinstance(prompt, torch.Tensor) or prompt.dim() != 2:
        shape = tuple(prompt.shape) if isinstance(prompt, torch.Tensor) else type(prompt)
        raise ValueError(f"prompt must be a (batch, prompt_len) tensor of token ids; got {shape}")
    if prompt.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"prompt dtype {prompt.dtype} must be torch.int64 (or int32)")
    if prompt.shape[0] < 1 or prompt.shape[1] < 1:
        raise ValueError(f"prompt shape {tuple(prompt.shape)}: batch and prompt_len must be >= 1")
    if (
        isinstance(max_new_tokens, bool)
        or not isinstance(max_new_tokens, int)
        or max_new_tokens < 0
    ):
        raise ValueError(f"max_new_tokens={max_new_tokens!r} must be an int >= 0")
    check_lengths(prompt.shape[1], max_new_tokens, config.max_seq_len)
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, (int, float))
        or not math.isfinite(temperature)
        or temperature < 0
    ):
        raise ValueError(f"temperature={temperature!r} must be a finite number >= 0 (0: greedy)")
    if top_k is not None and (
        isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= config.vocab_size
    ):
        raise ValueError(
            f"top_k={top_k!r} must be None or an int in [1, vocab_size={config.vocab_size}]"
        )
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(
            f"generator must be a torch.Generator or None; got {type(generator).__name__}"
        )
    if not isinstance(use_cache, bool):
        raise ValueError(f"use_cache={use_cache!r} must be True or False")


def _like(model: CachedLM) -> torch.Tensor:
    """A tensor with the dtype and device the caches hold: the model's parameters'."""
    return next(iter(model.parameters())).detach()[:0]


@contextlib.contextmanager
def _inference(model: CachedLM) -> Iterator[None]:
    """No autograd and no dropout, the caller's training mode given back afterwards."""
    was_training = model.training
    model.train(False)
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)
