"""Train with one attention, evaluate with another: the switch behind Table 2's matrix.

An attention is named as in suites.rows.names: ``"shared-full"``, ``"lsh-N"`` (N hash
rounds), ``"local"`` (chunked look-back attention, no hash) or ``"sdpa"`` (the Transformer
baseline's own attention, which cannot be switched).

Every shared-QK Reformer here is built with ``attention="lsh"`` (shared-QK
:class:`reformer.lsh.LSHSelfAttention` layers, Reformer sec. 2) or ``attention="local"``
(:class:`reformer.lsh.local.LocalSelfAttention`, the same parameters), so one set of
weights can run any spec. The model is never changed: a spec becomes the per-call
arguments of its forward (:func:`spec_arguments`), as HF transformers' Reformer takes
``num_hashes``, on a model whose layers are of the kind the spec needs
(:func:`layer_attention`; suites.quality.tasks loads the weights into it):

- ``"lsh-N"`` is ``n_hashes=N`` on LSH layers (bucket_size and n_buckets as built);
- ``"local"`` is no argument on local layers;
- ``"shared-full"`` is ``exact=True`` on either: exact shared-QK softmax attention over
  every earlier position, the attention both approximate. The paper's Table 2 "Full" is
  likewise shared-QK full attention: only a shared-QK model can be evaluated with LSH.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from reformer.lsh import LSHSelfAttention
from reformer.lsh.local import LocalSelfAttention
from reformer.seeds import layer_seed
from suites.rows.names import LOCAL, SDPA, SHARED_FULL, decoded_attention, parse_run_attention


def spec_arguments(spec: str) -> dict[str, Any]:
    """The per-call arguments of a shared-QK ReformerLM that compute ``spec``:
    ``{"exact": True}``, ``{"n_hashes": N}``, or none for ``"local"`` (on local layers)."""
    kind, n_hashes = parse_run_attention(spec)
    if kind == SDPA:
        raise ValueError(
            f"attention spec {SDPA!r} is the Transformer baseline's own; a "
            f"shared-QK Reformer model runs {SHARED_FULL!r}, {LOCAL!r} or 'lsh-N'"
        )
    if kind == SHARED_FULL:
        return {"exact": True}
    if kind == LOCAL:
        return {}
    return {"n_hashes": n_hashes}


def layer_attention(spec: str, trained_with: str) -> str:
    """The ``ReformerConfig.attention`` of the layers that run ``spec`` on a shared-QK
    model: "local" for local attention, "lsh" for LSH-N, and for shared-full (either
    computes it) the kind the model was trained with (``trained_with``, its config's).
    An incremental-decoding spec ("decode-lsh-N") is that of the attention it decodes."""
    kind, _ = parse_run_attention(decoded_attention(spec) or spec)
    if kind == LOCAL:
        return "local"
    if kind == SHARED_FULL:
        return trained_with
    return "lsh"


def lsh_layers(model: nn.Module) -> list[LSHSelfAttention]:
    """The model's shared-QK layers, LSH or local (a local layer is an LSH layer unhashed)."""
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
            f"attention spec {spec!r} needs a model with shared-QK LSH or local layers "
            "(ReformerLM with attention='lsh' or 'local'); this model has none"
        )
    kind, _ = parse_run_attention(spec)
    local = [isinstance(layer, LocalSelfAttention) for layer in layers]
    if kind == LOCAL and not all(local):
        raise ValueError(
            f"attention spec {spec!r} needs local layers (ReformerLM with "
            "attention='local'); this model's layers hash (attention='lsh')"
        )
    if kind == "lsh" and any(local):
        raise ValueError(
            f"attention spec {spec!r} needs LSH layers (ReformerLM with attention='lsh'); "
            "this model's layers are local (attention='local')"
        )
    arguments = spec_arguments(spec)
    if seed is not None:
        for layer in layers:
            layer.generator.manual_seed(layer_seed(seed, layer.layer_idx))
    return arguments
