"""Train with one attention, evaluate with another: the switch behind Table 2's matrix.

An attention is named as in suites.rows.names: ``"shared-full"``, ``"lsh-N"`` (N hash rounds)
or ``"sdpa"`` (the Transformer baseline's own attention, which cannot be switched).

Every Reformer model here is built with ``attention="lsh"``, i.e. shared-QK
:class:`reformer.lsh.LSHSelfAttention` layers (Reformer sec. 2), so one set of weights can
run any spec:

- ``"lsh-N"`` sets ``n_hashes = N`` (bucket_size and n_buckets as trained);
- ``"shared-full"`` is exact shared-QK softmax attention over every earlier position: LSH
  attention with one round, two buckets and ``bucket_size = L``, i.e. a single chunk that
  holds the whole sequence, so every query sees every key and the output equals exact
  shared-QK softmax attention (tests/reformer/test_lsh.py checks this against the reference).
  The paper's Table 2 "Full" is likewise shared-QK full attention: only a shared-QK model
  can be evaluated with LSH.

The layers read their config at every forward, so :func:`attention_as` only replaces each
LSH layer's config for the length of a ``with`` block (training with one spec, evaluating
with another); nothing is rebuilt, the weights are untouched, and the model's own config
keeps saying how it was built.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

from reformer.config import ReformerConfig
from reformer.lsh import LSHSelfAttention, layer_seed
from suites.rows.names import SDPA, SHARED_FULL, parse_run_attention


def spec_config(config: ReformerConfig, spec: str, seq_len: int) -> ReformerConfig:
    """The shared-QK layer config that computes ``spec`` on sequences of ``seq_len``."""
    kind, n_hashes = parse_run_attention(spec)
    if kind == SDPA:
        raise ValueError(
            f"attention spec {SDPA!r} is the Transformer baseline's own; a "
            f"shared-QK Reformer model runs {SHARED_FULL!r} or 'lsh-N'"
        )
    if kind == SHARED_FULL:
        return config.replace(attention="lsh", n_hashes=1, n_buckets=2, bucket_size=seq_len)
    return config.replace(attention="lsh", n_hashes=n_hashes)


def lsh_layers(model: nn.Module) -> list[LSHSelfAttention]:
    return [module for module in model.modules() if isinstance(module, LSHSelfAttention)]


@contextmanager
def attention_as(
    model: nn.Module, spec: str, seq_len: int, trained: ReformerConfig, seed: int | None = None
) -> Iterator[None]:
    """Inside the block, every LSH layer of ``model`` computes ``spec``.

    ``trained`` is the config the model was built and trained with (its bucket_size and
    n_buckets are kept for LSH specs). With ``seed``, each layer's hash generator is
    reseeded from (seed, layer index), so an evaluation draws the same rotations whatever
    ran before it. On exit every layer has its own config back; ``model.config`` is never
    touched, so it always says how the model was built.
    """
    layers = lsh_layers(model)
    if not layers:
        raise ValueError(
            f"attention spec {spec!r} needs a model with shared-QK LSH layers "
            "(ReformerLM with attention='lsh'); this model has none"
        )
    config = spec_config(trained, spec, seq_len)
    built = [layer.config for layer in layers]
    for layer in layers:
        layer.config = config
        if seed is not None:
            layer.generator.manual_seed(layer_seed(seed, layer.layer_idx))
    try:
        yield
    finally:
        for layer, own in zip(layers, built, strict=True):
            layer.config = own
