"""TransformerLM: the plain pre-LN causal Transformer every suite measures the Reformer against.

Written on its own, with nothing from the Reformer's layers, so a bug there cannot hide
here. Per layer, for h (B, L, d):

    h = h + dropout(W_o · attention(LN(h)))          q, k, v = LN(h) · W_qkv (no bias)
    h = h + dropout(W_2 · gelu(W_1 · LN(h) + b_1) + b_2)

then logits = W_head · LN(h) (no bias). Attention is ``"full"`` (the (B, H, L, L) score
matrix materialised: what the Reformer paper compares against) or ``"sdpa"``
(``torch.nn.functional.scaled_dot_product_attention``: what users pick today).

It reads the same ``ReformerConfig``; the Reformer-only fields (n_hashes, bucket_size,
n_buckets, dup_correction, reversible, ff_chunks) are ignored. Its parameters and
matmuls equal those of ``ReformerLM(attention="full", reversible=False, ff_chunks=1)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from reformer.config import ReformerConfig
from reformer.decode import KVCache, check_decode_positions, position_index, prefill_padding
from reformer.embedding import build_positional_embedding
from reformer.exact import exact_attention
from reformer.generate import GenerationMixin
from reformer.loss import check_loss_tokens, next_token_loss

BASELINE_ATTENTIONS = ("full", "sdpa")


class TransformerLayer(nn.Module):
    """Pre-LN attention + MLP residual layer, (B, L, d) -> (B, L, d)."""

    def __init__(self, config: ReformerConfig) -> None:
        super().__init__()
        d_model = config.d_model
        self.n_heads = config.n_heads
        self.causal = config.causal
        self.use_sdpa = config.attention == "sdpa"
        self.ln_attn = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.proj = nn.Linear(d_model, d_model)
        self.ln_mlp = nn.LayerNorm(d_model)
        self.fc = nn.Linear(d_model, config.d_ff)
        self.fc_out = nn.Linear(config.d_ff, d_model)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = h + self.drop(self.proj(self._attention(self.ln_attn(h))))
        return h + self.drop(self.fc_out(F.gelu(self.fc(self.ln_mlp(h)))))

    def cached(self, h: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """The layer on new positions h (B, n, d) after the cached ones (no dropout): their
        keys and values join ``cache``; (B, n, d)."""
        batch, n_new, d_model = h.shape
        qkv = self.qkv(self.ln_attn(h)).view(batch, n_new, 3, self.n_heads, -1)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # (B, nh, n, hs) each
        keys, values = cache.append(k, v)
        mask = cache.key_mask(keys.shape[2])  # a ragged batch's padded slots
        y = exact_attention(q, keys, values, padding_mask=mask, sdpa=self.use_sdpa)
        h = h + self.proj(y.transpose(1, 2).reshape(batch, n_new, d_model))
        return h + self.fc_out(F.gelu(self.fc(self.ln_mlp(h))))

    def _attention(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq_len, d_model = x.shape
        # The head width spelled out: -1 cannot be inferred from a batch of no sequences.
        d_head = d_model // self.n_heads
        q, k, v = self.qkv(x).view(batch, seq_len, 3, self.n_heads, d_head).permute(2, 0, 3, 1, 4)
        if self.use_sdpa:  # q, k, v: (B, nh, L, hs)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        else:
            att = (q @ k.transpose(-2, -1)) / (k.shape[-1] ** 0.5)  # (B, nh, L, L)
            if self.causal:
                future = torch.ones(seq_len, seq_len, dtype=torch.bool, device=x.device).triu(1)
                att = att.masked_fill(future, float("-inf"))
            y = att.softmax(dim=-1) @ v  # (B, nh, L, hs)
        return y.transpose(1, 2).reshape(batch, seq_len, d_model)


class TransformerLM(GenerationMixin, nn.Module):
    """Causal LM: tokens (B, L) int64 -> logits (B, L, vocab_size).

    ``generate`` (reformer.generate) keeps a key/value cache per layer, or with
    ``use_cache=False`` recomputes the whole context for every token."""

    layers: Sequence[TransformerLayer]  # an nn.ModuleList, typed by what it holds
    pos_emb: Any  # Learned or Axial (reformer.embedding): both offer positions()

    def __init__(self, config: ReformerConfig) -> None:
        super().__init__()
        if config.attention not in BASELINE_ATTENTIONS:
            raise ValueError(
                f"TransformerLM attention={config.attention!r} is not supported; "
                f"allowed: {BASELINE_ATTENTIONS} (use ReformerLM for 'lsh')"
            )
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.d_model)
        self.pos_emb = build_positional_embedding(config)
        self.layers = nn.ModuleList(  # type: ignore[assignment]  # see the annotation above
            TransformerLayer(config) for _ in range(config.n_layers)
        )
        self.ln_f = nn.LayerNorm(config.d_model)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.drop = nn.Dropout(config.dropout)
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
                bias = getattr(module, "bias", None)
                if isinstance(bias, torch.Tensor):
                    nn.init.zeros_(bias)

    def _features(self, tokens: torch.Tensor) -> torch.Tensor:
        _check(tokens, self.config)
        h = self.tok_emb(tokens) + self.pos_emb(tokens.shape[1])
        for layer in self.layers:
            h = layer(h)
        return self.ln_f(h)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self._features(tokens))

    def new_caches(self, batch: int, capacity: int, like: torch.Tensor) -> list[KVCache]:
        cfg = self.config
        return [KVCache(batch, cfg.n_heads, cfg.d_head, capacity, like) for _ in self.layers]

    def decode(
        self,
        tokens: torch.Tensor,
        caches: list[KVCache],
        padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits (B, vocab) of the last of the new positions ``tokens`` (B, n), appended
        to ``caches``. ``padding_mask`` (B, n) bool on the prefill only: a left-padded
        batch, as in ReformerLM.decode (padded slots masked, positions per row)."""
        _check(tokens, self.config)
        start, end = caches[0].length, caches[0].length + tokens.shape[1]
        check_decode_positions(start, tokens.shape[1], self.config.max_seq_len)
        first = prefill_padding(caches, tokens, padding_mask)
        if first is None:
            positions = self.pos_emb.positions(start, end)  # (n, d), every row
        else:
            positions = self.pos_emb.at(position_index(first, start, end))
        h = self.tok_emb(tokens) + positions
        for layer, cache in zip(self.layers, caches, strict=True):
            h = layer.cached(h, cache)
        return self.head(self.ln_f(h[:, -1]))

    def loss(self, tokens: torch.Tensor) -> torch.Tensor:
        """Mean next-token cross-entropy (logits at t predict tokens[:, t + 1])."""
        check_loss_tokens(tokens)
        # The same sliced head + loss as ReformerLM, so memory comparisons isolate attention.
        return next_token_loss(self.head, self._features(tokens), tokens)


def _check(tokens: torch.Tensor, config: ReformerConfig) -> None:
    if tokens.dim() != 2 or tokens.dtype not in (torch.int64, torch.int32):
        raise ValueError(
            f"tokens must be (batch, seq_len) int64; got {tuple(tokens.shape)} {tokens.dtype}"
        )
    if tokens.shape[1] > config.max_seq_len:
        raise ValueError(
            f"seq_len={tokens.shape[1]} exceeds max_seq_len={config.max_seq_len}; "
            "allowed: seq_len <= max_seq_len"
        )
    if tokens.numel() and (tokens.min() < 0 or tokens.max() >= config.vocab_size):
        raise ValueError(
            f"token ids must be in [0, vocab_size={config.vocab_size}); got "
            f"min {int(tokens.min())}, max {int(tokens.max())}"
        )
