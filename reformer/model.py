"""ReformerLM: a causal language model of LSH attention, reversible layers and chunked FF.

Reformer (Kitaev, Kaiser, Levskaya, ICLR 2020) sec. 2-4. Layout, for tokens (B, L):

    h = token_embedding(tokens) + positional_embedding(L)        (B, L, d)
    reversible:  (Y1, Y2) = stack of  Y1 = X1 + F(X2), Y2 = X2 + G(Y1)  from X1 = X2 = h;
                 h = Y1 + Y2   (the halves are *summed*, so the norm and head have the same
                 shape with reversibility on or off and the ablation changes nothing else)
    otherwise:   pre-LN residual layers  h = h + F(h); h = h + G(h)
    logits = head(LayerNorm(h))                                   (B, L, vocab)

F = dropout(attention(LayerNorm(x))) with attention "lsh" | "full" | "sdpa" | "local" (see
reformer.attention) and G = dropout(FeedForward(x)), the FF chunked over the sequence
when ``ff_chunks`` > 1 (reformer.feedforward). Every random draw (hash rotations, dropout
masks) comes from generators each layer owns, seeded from (config.seed, layer index).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from reformer.attention import build_attention
from reformer.checks import check_call, check_n_hashes
from reformer.config import ReformerConfig
from reformer.decode import check_decode_positions, position_index, prefill_padding
from reformer.dropout import ReplayableDropout
from reformer.embedding import build_positional_embedding
from reformer.feedforward import FeedForward
from reformer.generate import GenerationMixin
from reformer.loss import check_loss_tokens, next_token_loss
from reformer.reversible import reversible_stack
from reformer.seeds import derived_seed

_INIT_STD = 0.02


class Block(nn.Module):
    """One layer: attention branch ``f`` and feed-forward branch ``g``, x (B, L, d) -> (B, L, d).

    The same block runs as a reversible layer or as a pre-LN residual layer; it also
    offers what :func:`reformer.reversible.reversible_stack` needs to replay it.
    """

    # Declared for the type checker: nn.Module's __getattr__ types submodules as
    # Tensor | Module, which hides their methods.
    attention: Any
    dropout: ReplayableDropout

    def __init__(self, config: ReformerConfig, layer_idx: int) -> None:
        super().__init__()
        self.attn_norm = nn.LayerNorm(config.d_model)
        self.attention = build_attention(config, layer_idx)
        self.ff = FeedForward(config)
        self.dropout = ReplayableDropout(
            config.dropout, seed=derived_seed("dropout", config.seed, layer_idx)
        )

    def f(
        self,
        x: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
        *,
        n_hashes: int | None = None,
        exact: bool = False,
    ) -> torch.Tensor:
        """The attention branch, x (B, L, d) -> (B, L, d), with the per-call attention
        arguments of :meth:`ReformerLM.forward` (checked there)."""
        project = getattr(self.attention, "project", None)
        fuses = getattr(self.attention, "fuses", None)
        if (
            project is None
            or not torch.is_grad_enabled()
            or (fuses is not None and fuses(x, exact))
        ):
            # The fused LSH layer (reformer.lsh.layer) keeps only its normalised input for
            # backward, one (B, L, d) buffer, instead of qk, v and the attention output.
            out = self.attention(self.attn_norm(x), padding_mask, n_hashes=n_hashes, exact=exact)
            return self.dropout(out)
        # The normalised input is needed only to make qk and v (and their weight
        # gradients), so backward recomputes it with them instead of holding one more
        # (B, L, d) buffer through the attention's backward.
        qk, v = checkpoint(self._project, x, use_reentrant=False, preserve_rng_state=False)
        return self.dropout(
            self.attention.attend(qk, v, padding_mask, n_hashes=n_hashes, exact=exact)
        )

    def _project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.attention.project(self.attn_norm(x))

    def g(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.ff(x))

    def f_parameters(self) -> list[nn.Parameter]:
        return [*self.attn_norm.parameters(), *self.attention.parameters()]

    def g_parameters(self) -> list[nn.Parameter]:
        return list(self.ff.parameters())

    def rng_state(self) -> tuple:
        hash_generator = getattr(self.attention, "generator", None)
        return (
            None if hash_generator is None else hash_generator.get_state(),
            self.dropout.get_state(),
        )

    def set_rng_state(self, state: tuple) -> None:
        hash_state, dropout_state = state
        if hash_state is not None:
            self.attention.generator.set_state(hash_state)
        self.dropout.set_state(dropout_state)


class ReformerLM(GenerationMixin, nn.Module):
    """Causal LM: tokens (B, L) int64 -> logits (B, L, vocab_size). See the module docstring.

    ``generate`` (reformer.generate) decodes with one cache per layer (reformer.decode):
    the attention's normalised input and the LSH bucket table ("lsh"), or keys and values
    ("full", "sdpa"; "local" keeps its shared qk as keys). Reversible layers need nothing
    else: at inference no activation is recomputed."""

    blocks: Sequence[Block]  # an nn.ModuleList, typed by what it holds
    position_embedding: Any  # Learned or Axial (reformer.embedding): both offer positions()

    def __init__(self, config: ReformerConfig) -> None:
        super().__init__()
        self.config = config
        self.token_embedding = nn.Embedding(config.vocab_size, config.d_model)
        self.position_embedding = build_positional_embedding(config)
        self.blocks = nn.ModuleList(  # type: ignore[assignment]  # see the annotation above
            Block(config, i) for i in range(config.n_layers)
        )
        self.norm = nn.LayerNorm(config.d_model)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        init_weights(self)

    def hidden(
        self,
        tokens: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
        *,
        n_hashes: int | None = None,
        exact: bool = False,
    ) -> torch.Tensor:
        """Final normalised hidden states (B, L, d_model), before the LM head; arguments as
        in :meth:`forward`."""
        check_tokens(tokens, self.config)
        check_call(tokens, padding_mask, n_hashes, exact, attention=self.config.attention)
        attend: dict[str, Any] = {"n_hashes": n_hashes, "exact": exact}
        h = self.token_embedding(tokens) + self.position_embedding(tokens.shape[1])
        if self.config.reversible:
            # The stack keeps padding_mask and the keywords for backward's replay of f.
            y1, y2 = reversible_stack(self.blocks, h, h, padding_mask, **attend)
            h = y1 + y2
        else:
            for block in self.blocks:
                h = h + block.f(h, padding_mask, **attend)
                h = h + block.g(h)
        return self.norm(h)

    def forward(
        self,
        tokens: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
        *,
        n_hashes: int | None = None,
        exact: bool = False,
    ) -> torch.Tensor:
        """tokens (B, L) int64 -> logits (B, L, vocab_size).

        Per call, without touching the config (as HF transformers' ``num_hashes``):

        - ``padding_mask`` (B, L) bool, True at real tokens: padded positions are never
          attended to by a real one (every layer), so with causal right padding the
          logits at real positions do not depend on the padded tokens;
        - ``n_hashes``: hash rounds of every LSH layer for this call (attention="lsh"
          only; config.n_hashes if None);
        - ``exact=True``: every layer attends exactly (for "lsh" and "local", shared-QK
          softmax over all allowed keys, the attention they approximate; "full" and "sdpa" are exact
          already). Not together with ``n_hashes``.

        Reversible backward replays each layer with the same arguments.
        """
        return self.head(self.hidden(tokens, padding_mask, n_hashes=n_hashes, exact=exact))

    def new_caches(
        self, batch: int, capacity: int, like: torch.Tensor, *, n_hashes: int | None = None
    ) -> list:
        """One empty decoding cache per layer, for ``capacity`` positions; LSH caches hash
        with ``n_hashes`` rounds (config.n_hashes if None; attention="lsh" only)."""
        check_n_hashes(n_hashes, self.config.attention)
        extra = {} if n_hashes is None else {"n_hashes": n_hashes}
        return [block.attention.new_cache(batch, capacity, like, **extra) for block in self.blocks]

    def decode(
        self, tokens: torch.Tensor, caches: list, padding_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits (B, vocab) of the last of the new positions ``tokens`` (B, n), which
        follow the cached ones and are appended to ``caches`` (no dropout, no autograd
        graph needed).

        ``padding_mask`` (B, n) bool, True at real tokens, on the prefill only (empty
        caches): a left-padded batch of prompts (reformer.decode.left_padding). Padded
        positions never enter a cache's key set, and each row counts positions from its
        own first real token, in this call and every later one."""
        check_tokens(tokens, self.config)
        start, end = caches[0].length, caches[0].length + tokens.shape[1]
        check_decode_positions(start, tokens.shape[1], self.config.max_seq_len)
        first = prefill_padding(caches, tokens, padding_mask)
        if first is None:
            positions = self.position_embedding.positions(start, end)  # (n, d), every row
        else:
            positions = self.position_embedding.at(position_index(first, start, end))
        h = self.token_embedding(tokens) + positions
        if tokens.shape[1] == 1 and start > 0:
            return self._step(h[:, 0], caches)
        if self.config.reversible:
            x1 = x2 = h
            for block, cache in zip(self.blocks, caches, strict=True):
                x1 = x1 + block.attention.cached(block.attn_norm(x2), cache)
                x2 = x2 + block.ff(x1)
            h = x1 + x2
        else:
            for block, cache in zip(self.blocks, caches, strict=True):
                h = h + block.attention.cached(block.attn_norm(h), cache)
                h = h + block.ff(h)
        return self.head(self.norm(h[:, -1]))

    def _step(self, h: torch.Tensor, caches: list) -> torch.Tensor:
        """One new position's layers, h (B, d_model) -> logits (B, vocab): each layer's
        attention step (the LSH layers' fused one where their cache has it) and its
        feed-forward on the position alone (no chunking: one position is one chunk), each
        residual added into the branch's fresh output (no further tensor)."""
        reversible = self.config.reversible
        x1 = x2 = h
        for block, cache in zip(self.blocks, caches, strict=True):
            attention = block.attention
            step = getattr(attention, "step", None)
            normed = block.attn_norm(x2)
            if step is None:
                attended = attention.cached(normed[:, None], cache)[:, 0]
            else:
                attended = step(normed, cache)
            x1 = attended.add_(x1)
            x2 = block.ff.position_wise(x1).add_(x2 if reversible else x1)
            if not reversible:
                x1 = x2
        return self.head(self.norm(x1 + x2 if reversible else x2))

    def loss(
        self,
        tokens: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
        *,
        n_hashes: int | None = None,
        exact: bool = False,
    ) -> torch.Tensor:
        """Mean next-token cross-entropy: logits at t predict tokens[:, t + 1]; scalar.

        Arguments as in :meth:`forward`; with ``padding_mask`` only real targets count
        (a target at a padded position is ignored). The head and loss run in slices at
        long L (reformer.loss), so the (B, L, vocab) logits are never held whole.
        """
        check_loss_tokens(tokens)
        hidden = self.hidden(tokens, padding_mask, n_hashes=n_hashes, exact=exact)
        return next_token_loss(self.head, hidden, tokens, target_mask=padding_mask)


def check_tokens(tokens: torch.Tensor, config: ReformerConfig) -> None:
    """Raise ValueError naming the problem unless tokens is (B, L) integer ids in range."""
    if not isinstance(tokens, torch.Tensor) or tokens.dim() != 2:
        shape = tuple(tokens.shape) if isinstance(tokens, torch.Tensor) else type(tokens)
        raise ValueError(f"tokens must be a (batch, seq_len) tensor of ids; got {shape}")
    if tokens.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"tokens dtype {tokens.dtype} must be torch.int64 (or int32)")
    seq_len = tokens.shape[1]
    if not 1 <= seq_len <= config.max_seq_len:
        raise ValueError(
            f"seq_len={seq_len} must be in [1, max_seq_len={config.max_seq_len}]; "
            "raise max_seq_len in the config for longer inputs"
        )
    if tokens.numel() == 0:  # batch 0: nothing to check, and min() of nothing is an error
        return
    low, high = int(tokens.min()), int(tokens.max())
    if low < 0 or high >= config.vocab_size:
        bad = low if low < 0 else high
        raise ValueError(f"token id {bad} is outside [0, vocab_size={config.vocab_size})")


def init_weights(model: nn.Module) -> None:
    """GPT-2 style: Linear and Embedding weights ~ N(0, 0.02), biases 0, LayerNorm (1, 0)."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=_INIT_STD)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=_INIT_STD)
