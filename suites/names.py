"""Names of models and attentions, said once: grids, the harness, the quality suite and the
reports all spell them through this module.

Attention, as ``ReformerConfig.attention`` names it (``reformer.config.ATTENTIONS``):

- ``"lsh"``: shared-QK LSH attention (Reformer sec. 2); with N hash rounds it is ``lsh-N``;
- ``"full"``: separate Q, K, V and the (L, L) score matrix materialised;
- ``"sdpa"``: the same math through torch's fused ``scaled_dot_product_attention``.

Models (a result row's ``model``):

- whole language models, tokens (B, L) -> loss: ``transformer-<attention>`` (the baseline)
  and ``reformer-<attention>[-rev]`` (``-rev``: reversible residuals);
- one attention layer, x (B, L, d_model) -> (B, L, d_model): ``attn-<attention>``;
- peer implementations of LSH attention: ``peer-reformer-pytorch``, ``peer-hf``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reformer.config import ReformerConfig

LM_FAMILIES = ("transformer", "reformer")
LAYER_PREFIX = "attn-"
PEER_PREFIX = "peer-"


def lm_model(family: str, config: ReformerConfig) -> str:
    """Row name of a whole LM built from ``config``: transformer-<attention>,
    reformer-<attention>[-rev]."""
    if family not in LM_FAMILIES:
        raise ValueError(f"family={family!r} is unknown; allowed: {LM_FAMILIES}")
    if family == "transformer":
        return f"transformer-{config.attention}"
    return f"reformer-{config.attention}" + ("-rev" if config.reversible else "")


def layer_model(config: ReformerConfig) -> str:
    """Row name of one attention layer built from ``config``: attn-<attention>."""
    return f"{LAYER_PREFIX}{config.attention}"


def model_kind(model: str) -> str:
    """"transformer" | "reformer" (whole LMs), "layer" (attn-*) or "peer" (peer-*)."""
    for family in LM_FAMILIES:
        if model.startswith(f"{family}-"):
            return family
    if model.startswith(LAYER_PREFIX):
        return "layer"
    if model.startswith(PEER_PREFIX):
        return "peer"
    raise ValueError(f"model={model!r} is unknown; allowed: transformer-<attention>, "
                     f"reformer-<attention>[-rev], {LAYER_PREFIX}<attention> or a "
                     f"{PEER_PREFIX}<name> peer (suites.names)")
