"""Name-keyed registry of self-attention layers, so a sweep says ``attention="lsh"|"local"|...``.

Every layer maps x (B, L, d_model) -> (B, L, d_model) and takes, per call, an optional
``padding_mask`` (B, L) bool, True at real tokens, and the keywords ``n_hashes`` (LSH
layers only: hash rounds for this call instead of config.n_hashes) and ``exact`` (True:
exact softmax attention of the layer's own kind; for "full" and "sdpa", which are exact
already, it changes nothing).

- ``"lsh"``: :class:`reformer.lsh.LSHSelfAttention` (Reformer sec. 2): shared QK, hashed
  chunks, O(L) memory.
- ``"full"``: separate Q, K, V projections and the materialised (B, H, L, L) score matrix
  softmax(QK^T / sqrt(d_head)) V, the O(L^2) attention the paper compares against.
- ``"sdpa"``: the same math through ``torch.nn.functional.scaled_dot_product_attention``
  (fused kernels; O(L) memory on backends that have flash or memory-efficient kernels).
- ``"local"``: :class:`reformer.lsh.local.LocalSelfAttention`: the LSH layer with the hash
  and the sort removed, chunks of ``bucket_size`` in position order, each seeing itself
  and the previous chunk. The control for what hashing buys: one round's cost, no hash.

"full" and "sdpa" have exactly the parameters and matmuls of the baseline
``TransformerLM`` (q, k, v without bias, output projection with bias), so a ReformerLM with
full attention, no reversibility and no FF chunking costs what the baseline costs.
"""

from __future__ import annotations

import torch
from torch import nn

from reformer.checks import check_call, check_layer_input
from reformer.config import ATTENTIONS, ReformerConfig
from reformer.decode import KVCache
from reformer.exact import exact_attention
from reformer.lsh import LSHSelfAttention
from reformer.lsh.local import LocalSelfAttention


class FullSelfAttention(nn.Module):
    """Multi-head softmax attention with the (B, H, L, L) scores materialised."""

    _sdpa = False  # SDPASelfAttention: the same through torch's fused kernels

    def __init__(self, config: ReformerConfig, layer_idx: int = 0) -> None:
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        d_model = config.d_model
        self.to_q = nn.Linear(d_model, d_model, bias=False)
        self.to_k = nn.Linear(d_model, d_model, bias=False)
        self.to_v = nn.Linear(d_model, d_model, bias=False)
        self.to_out = nn.Linear(d_model, d_model)

    def forward(
        self,
        x: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
        *,
        n_hashes: int | None = None,
        exact: bool = False,
    ) -> torch.Tensor:
        """x (B, L, d_model) -> (B, L, d_model). ``n_hashes`` is refused (no hashing here);
        ``exact`` is accepted and changes nothing (this attention is exact)."""
        check_layer_input(x, self.config.d_model)
        check_call(x, padding_mask, n_hashes, exact, attention=self.config.attention)
        batch, seq_len, d_model = x.shape
        q, k, v = (self._heads(proj(x)) for proj in (self.to_q, self.to_k, self.to_v))
        out = self.attend(q, k, v, padding_mask)  # (B, H, L, d_head)
        return self.to_out(out.transpose(1, 2).reshape(batch, seq_len, d_model))

    def attend(self, q, k, v, padding_mask):
        """softmax(q k^T / sqrt(d_head)) v for q, k, v (B, H, L, d_head)."""
        return exact_attention(
            q, k, v, causal=self.config.causal, padding_mask=padding_mask, sdpa=self._sdpa
        )

    def new_cache(self, batch: int, capacity: int, like: torch.Tensor) -> KVCache:
        """An empty key/value cache for ``capacity`` positions (reformer.decode)."""
        return KVCache(batch, self.config.n_heads, self.config.d_head, capacity, like)

    def cached(self, x: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Attention of new positions x (B, n, d_model) over the cached past and themselves
        (causal), appending their keys and values: (B, n, d_model). Padded slots of a
        ragged batch (the cache's ``first``) are masked as keys."""
        batch, n_new, d_model = x.shape
        q, k, v = (self._heads(proj(x)) for proj in (self.to_q, self.to_k, self.to_v))
        keys, values = cache.append(k, v)
        mask = cache.key_mask(keys.shape[2])  # a ragged batch's padded slots
        out = exact_attention(q, keys, values, padding_mask=mask, sdpa=self._sdpa)
        return self.to_out(out.transpose(1, 2).reshape(batch, n_new, d_model))

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, d_model) -> (B, H, L, d_head)."""
        return x.unflatten(-1, (self.config.n_heads, self.config.d_head)).transpose(1, 2)


class SDPASelfAttention(FullSelfAttention):
    """The same attention through torch's fused scaled_dot_product_attention."""

    _sdpa = True


ATTENTION_REGISTRY: dict[str, type[nn.Module]] = {
    "lsh": LSHSelfAttention,
    "full": FullSelfAttention,
    "sdpa": SDPASelfAttention,
    "local": LocalSelfAttention,
}
assert tuple(ATTENTION_REGISTRY) == ATTENTIONS, "registry and config.ATTENTIONS must agree"


def build_attention(config: ReformerConfig, layer_idx: int = 0) -> nn.Module:
    """The attention layer named by ``config.attention`` for layer ``layer_idx``."""
    try:
        layer_class = ATTENTION_REGISTRY[config.attention]
    except KeyError:
        raise ValueError(
            f"attention={config.attention!r} is unknown; allowed: {tuple(ATTENTION_REGISTRY)}"
        ) from None
    return layer_class(config, layer_idx)
