"""Adapters that run installed peer LSH attentions under the harness, on our config.

Each adapter maps x (B, L, d_model) -> (B, L, d_model), like ``reformer.LSHSelfAttention``:
shared-QK projection, LSH attention over chunks, output projection. Peers are imported
lazily; a missing one raises :class:`PeerMissing` with the install command
(``pip install '.[peers]'``), and the peers suite records the point as skipped with it.

How each is matched to a ``ReformerConfig`` (what cannot be matched is said here, and the
row records what the peer actually used):

- **reformer-pytorch** ``LSHSelfAttention(dim, heads, bucket_size, n_hashes, causal)``. Its
  ``bucket_size`` is the chunk length (each chunk attends to itself and the one before),
  so it gets our ``bucket_size``. It always hashes into ``L / bucket_size`` buckets, half
  our default ``2·L / bucket_size``; that is not configurable, so the chunk length is
  matched and the bucket count is not. It needs L to be a multiple of 2·bucket_size. Our
  duplicate-key correction maps to its ``allow_duplicate_attention=False``. It draws
  rotations from the global RNG (the harness seeds it).
- **HF transformers** ``ReformerConfig`` + ``LSHSelfAttention``: ``lsh_attn_chunk_length``
  = our bucket_size, one chunk before and none after, ``num_buckets`` = exactly the bucket
  count (or factors) ours uses at this length, ``is_decoder`` = causal. HF's layer has no
  output projection (``ReformerSelfOutput`` adds one, without bias), so the adapter adds
  that Linear. HF has no duplicate-key correction: it always runs without it.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from typing import Any

import torch
from torch import nn

INSTALL_HINT = "pip install '.[peers]' (reformer-pytorch, transformers)"
PEER_PACKAGES = {
    "peer-reformer-pytorch": ("reformer_pytorch", "reformer-pytorch"),
    "peer-hf": ("transformers", "transformers"),
}


class PeerMissing(ImportError):
    """A peer implementation is not installed."""


def peer_available(model: str) -> bool:
    module, _ = _package(model)
    return importlib.util.find_spec(module) is not None


def peer_version(model: str) -> str | None:
    _, distribution = _package(model)
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def missing_note(model: str) -> str:
    _, distribution = _package(model)
    return f"{distribution} is not installed; {INSTALL_HINT}"


def build_peer(model: str, config: Any, seq_len: int) -> tuple[nn.Module, dict[str, Any]]:
    """(layer, row fields: impl, impl_version, n_buckets) for a peer on ``config``."""
    if not peer_available(model):
        raise PeerMissing(missing_note(model))
    _, distribution = _package(model)
    info: dict[str, Any] = {"impl": distribution, "impl_version": peer_version(model)}
    if model == "peer-reformer-pytorch":
        layer = _reformer_pytorch(config, seq_len)
        info["n_buckets"] = seq_len // config.bucket_size
    else:
        layer = HFLSHAttention(config, seq_len)
        info["n_buckets"] = _product(layer.attention.num_buckets)
    return layer, info


def _package(model: str) -> tuple[str, str]:
    try:
        return PEER_PACKAGES[model]
    except KeyError:
        raise ValueError(
            f"peer model={model!r} is unknown; allowed: {tuple(PEER_PACKAGES)}"
        ) from None


def _reformer_pytorch(config: Any, seq_len: int) -> nn.Module:
    from reformer_pytorch import LSHSelfAttention

    if seq_len % (2 * config.bucket_size):
        raise ValueError(
            f"reformer-pytorch needs seq_len={seq_len} to be a multiple of "
            f"2 * bucket_size = {2 * config.bucket_size}"
        )
    return LSHSelfAttention(
        dim=config.d_model,
        heads=config.n_heads,
        bucket_size=config.bucket_size,
        n_hashes=config.n_hashes,
        causal=config.causal,
        dropout=0.0,
        post_attn_dropout=0.0,
        allow_duplicate_attention=not config.dup_correction,
        attend_across_buckets=True,
    )


class HFLSHAttention(nn.Module):
    """HF transformers' LSHSelfAttention plus the output projection HF applies after it."""

    def __init__(self, config: Any, seq_len: int) -> None:
        super().__init__()
        from transformers import ReformerConfig as HFReformerConfig
        from transformers.models.reformer.modeling_reformer import LSHSelfAttention

        hf_config = HFReformerConfig(**hf_lsh_settings(config, seq_len), attn_layers=["lsh"])
        self.attention = LSHSelfAttention(hf_config, layer_idx=0)
        self.output = nn.Linear(config.d_model, config.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.attention(x).hidden_states)


def hf_lsh_settings(config: Any, seq_len: int) -> dict[str, Any]:
    """HF ``ReformerConfig`` arguments for LSH attention on our config at ``seq_len``: widths,
    rounds, chunk length (one chunk back, none ahead), exactly our bucket count or factors,
    causal as ``is_decoder``, no dropout, fresh rotations per call."""
    from reformer.lsh.hashing import resolve_n_buckets

    factors = resolve_n_buckets(config.n_buckets, seq_len, config.bucket_size)
    return {
        "hidden_size": config.d_model,
        "num_attention_heads": config.n_heads,
        "attention_head_size": config.d_head,
        "num_hashes": config.n_hashes,
        "lsh_attn_chunk_length": config.bucket_size,
        "lsh_num_chunks_before": 1,
        "lsh_num_chunks_after": 0,
        "num_buckets": factors[0] if len(factors) == 1 else list(factors),
        "is_decoder": config.causal,
        "max_position_embeddings": seq_len,
        "lsh_attention_probs_dropout_prob": 0.0,
        "hash_seed": None,
    }


def _product(num_buckets: int | list[int] | None) -> int | None:
    from reformer.lsh.hashing import total_buckets

    if num_buckets is None or isinstance(num_buckets, int):
        return num_buckets
    return total_buckets(tuple(num_buckets))
