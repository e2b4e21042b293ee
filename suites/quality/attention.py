"""Train with one attention, evaluate with another: the switch behind Table 2's matrix.

An attention is named as in suites.rows.names: ``"shared-full"``, ``"lsh-N"`` (N hash rounds)
or ``"sdpa"`` (the Transformer baseline's own attention, which cannot be switched).

Every Reformer model here is built with ``attention="lsh"``, i.e. shared-QK
:class:`reformer.lsh.LSHSelfAttention` layers (Reformer sec. 2), so one set of weights can
run any spec. The model is never changed: a spec becomes the per-call arguments of its
forward (:func:`spec_arguments`), as HF transformers' Reformer takes ``num_hashes``:

- ``"lsh-N"`` is ``n_hashes=N`` (bucket_size and n_buckets as built);
- ``"shared-full"`` is ``exact=True``: exact shared-QK softmax attention over every
  earlier position, the attention LSH approximates. The paper's Table 2 "Full" is
  likewise shared-QK full attention: only a shared-QK model can be evaluated with LSH.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from reformer.lsh import LSHSelfAttention
from reformer.seeds import layer_seed
from suites.rows.names import SDPA, SHARED_FULL, parse_run_attention


def spec_arguments(spec: str) -> dict[str, Any]:
    """The per-call arguments of a shared-QK ReformerLM that compute ``spec``:
    ``{"exact": True}`` or ``{"n_hashes": N}``."""
    kind, n_hashes = parse_run_attention(spec)
    if kind == SDPA:
        raise ValueError(
            f"attention spec {SDPA!r} is the Transformer baseline's own; a "
            f"shared-QK Reformer model runs {SHARED_FULL!r} or 'lsh-N'"
        )
    if kind == SHARED_FULL:
        return {"exact": True}
    return {"n_hashes": n_hashes}


def lsh_layers(model: nn.Module) -> list[LSHSelfAttention]:
    return [module for module in model.modules() if isinstance(module, LSHSelfAttention)]


def attention_arguments(model: nn.Module, spec: str, seed: int | None = None) -> dict[str, Any]:
    """The per-call arguments with which ``model`` computes ``spec`` (see
    :func:`spec_arguments`), after checking that it has shared-QK LSH layers.

    With ``seed``, each layer's hash generator is reseeded from (seed, layer index), so an
    evaluation draws the same rotations whatever ran before it.
    """
    layers = lsh_layers(model)
    if not layers:
        raise ValueError(
            f"attention spec {spec!r} needs a model with shared-QK LSH layers "
            "(ReformerLM with attention='lsh'); this model has none"
        )
    arguments = spec_arguments(spec)
    if seed is not None:
        for layer in layers:
            layer.generator.manual_seed(layer_seed(seed, layer.layer_idx))
    return arguments
