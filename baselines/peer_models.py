"""Whole peer Reformer language models on our config, for the peers suite's model race.

A user picks a library by its whole training step, not one attention layer: embeddings,
reversible blocks, the chunked feed-forward, the LM head and loss. Each adapter builds a
peer's own Reformer LM at the shapes of a ``ReformerConfig`` and gives it our LM's
interface: ``forward(tokens (B, L)) -> logits (B, L, vocab)`` and ``loss(tokens)``, the mean
next-token cross-entropy (logits at t predict token t + 1), as ``reformer.ReformerLM``.

Matched: vocabulary, d_model, heads and head width, layers, d_ff, LSH rounds, chunk length
(one chunk back, none ahead), causal, reversible residuals (both peers are always
reversible), the feed-forward in ``config.ff_chunks`` chunks, GELU, axial positions of
``config.axial_shape``, no dropout. Not matchable, and said here and in the row's
``impl``:

- **HF transformers** ``ReformerModelWithLMHead``: the bucket count is ours (exactly, or
  its factors); no duplicate-key correction; its axial table must cover exactly L
  positions, so ``axial_shape`` must multiply to L, and its two halves are (d/2, d/2) as
  ours; its LM head is a norm and one Linear over the two reversible halves side by side
  (2·d inputs), where ours normalises their sum (d inputs): a head twice as wide.
- **reformer-pytorch** ``ReformerLM``: it always hashes into L / chunk buckets (half our
  default); its ``ReformerLM`` takes no ``allow_duplicate_attention``, so it runs its
  layers' default (duplicates attended, no correction); its axial embedding adds the two
  tables (ours concatenates halves). It draws rotations from the global RNG.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from baselines.peers import PeerMissing, missing_note, peer_available, peer_version

# Model name (a row's ``model``) -> the peer package it needs (baselines.peers).
PEER_LMS = {
    "peer-lm-hf": "peer-hf",
    "peer-lm-reformer-pytorch": "peer-reformer-pytorch",
}


def build_peer_lm(model: str, config: Any, seq_len: int) -> tuple[nn.Module, dict[str, Any]]:
    """(the peer's LM with ``loss(tokens)``, row fields impl, impl_version, n_buckets)."""
    if model not in PEER_LMS:
        raise ValueError(f"peer model={model!r} is unknown; allowed: {tuple(PEER_LMS)}")
    package = PEER_LMS[model]
    if not peer_available(package):
        raise PeerMissing(missing_note(package))
    axial = _axial_shape(config, seq_len)
    info: dict[str, Any] = {"impl_version": peer_version(package)}
    if model == "peer-lm-hf":
        net: nn.Module = HFReformerLM(config, seq_len, axial)
        info |= {"impl": "transformers ReformerModelWithLMHead", "n_buckets": net.n_buckets}
    else:
        net = ReformerPytorchLM(config, seq_len, axial)
        info |= {"impl": "reformer-pytorch ReformerLM", "n_buckets": seq_len // config.bucket_size}
    return net, info


def next_token_loss(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of logits (B, L, V) at t against tokens (B, L) at t + 1."""
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), tokens[:, 1:].flatten())


class HFReformerLM(nn.Module):
    """HF transformers' ``ReformerModelWithLMHead``, all layers LSH, on our config."""

    def __init__(self, config: Any, seq_len: int, axial: tuple[int, int]) -> None:
        super().__init__()
        from transformers import ReformerConfig as HFReformerConfig
        from transformers import ReformerModelWithLMHead

        from baselines.peers import hf_lsh_settings

        lsh = hf_lsh_settings(config, seq_len)
        hf_config = HFReformerConfig(
            **lsh,
            vocab_size=config.vocab_size,
            feed_forward_size=config.d_ff,
            hidden_act="gelu",
            attn_layers=["lsh"] * config.n_layers,
            axial_pos_embds=True,
            axial_pos_shape=list(axial),
            axial_pos_embds_dim=[config.d_model // 2, config.d_model - config.d_model // 2],
            chunk_size_feed_forward=max(1, seq_len // config.ff_chunks),
            hidden_dropout_prob=0.0,
            local_attention_probs_dropout_prob=0.0,
            use_cache=False,
            tie_word_embeddings=False,
            pad_token_id=None,
            eos_token_id=None,
        )
        self.model = ReformerModelWithLMHead(hf_config)
        buckets = lsh["num_buckets"]
        self.n_buckets = buckets if isinstance(buckets, int) else math.prod(buckets)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=tokens, use_cache=False).logits

    def loss(self, tokens: torch.Tensor) -> torch.Tensor:
        return next_token_loss(self(tokens), tokens)


class ReformerPytorchLM(nn.Module):
    """reformer-pytorch's ``ReformerLM`` on our config."""

    def __init__(self, config: Any, seq_len: int, axial: tuple[int, int]) -> None:
        super().__init__()
        from reformer_pytorch import ReformerLM

        if seq_len % (2 * config.bucket_size):
            raise ValueError(
                f"reformer-pytorch needs seq_len={seq_len} to be a multiple of "
                f"2 * bucket_size = {2 * config.bucket_size}"
            )
        if config.d_ff % config.d_model:
            raise ValueError(
                f"reformer-pytorch sets d_ff as a multiple of d_model; d_ff={config.d_ff} "
                f"is not one of d_model={config.d_model}"
            )
        self.model = ReformerLM(
            num_tokens=config.vocab_size,
            dim=config.d_model,
            depth=config.n_layers,
            max_seq_len=seq_len,
            heads=config.n_heads,
            dim_head=config.d_head,
            bucket_size=config.bucket_size,
            n_hashes=config.n_hashes,
            ff_chunks=config.ff_chunks,
            ff_mult=config.d_ff // config.d_model,
            causal=config.causal,
            lsh_dropout=0.0,
            ff_dropout=0.0,
            post_attn_dropout=0.0,
            layer_dropout=0.0,
            axial_position_emb=True,
            axial_position_shape=axial,
        )

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model(tokens)

    def loss(self, tokens: torch.Tensor) -> torch.Tensor:
        return next_token_loss(self(tokens), tokens)


def _axial_shape(config: Any, seq_len: int) -> tuple[int, int]:
    """The config's axial shape, which must multiply to exactly L here (HF needs it)."""
    shape = config.axial_shape
    if shape is None or shape[0] * shape[1] != seq_len:
        raise ValueError(
            f"axial_shape={shape!r} must multiply to seq_len={seq_len} for the peer LMs "
            "(HF's axial table covers exactly L positions); e.g. model_race_config(L)"
        )
    return int(shape[0]), int(shape[1])


def model_race_config(base: Any, seq_len: int) -> Any:
    """``base`` at length L with an axial shape that multiplies to L (rows >= columns,
    both powers of two for L a power of two) and max_seq_len L."""
    cols = 2 ** (int(math.log2(seq_len)) // 2)
    if seq_len % cols:
        raise ValueError(f"seq_len={seq_len} must be a multiple of {cols} for an axial shape")
    return base.replace(axial_shape=(seq_len // cols, cols), max_seq_len=seq_len)
