"""What a model point measures, and the result-row fields that say so.

A model point is a model name (suites.rows.names), a ``ReformerConfig`` built from a preset with
``.replace(...)``, and a :class:`Workload`: how the model is run (phase, batch, length,
dtype, device, threads). The config columns of a result row derive from both: the harness
fields, then every ``ReformerConfig`` field except ``max_seq_len`` (a point's model is built
for exactly its ``seq_len``). Nothing here restates a config default.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from reformer.config import ReformerConfig
from suites.rows.names import model_kind
from suites.rows.schema import DTYPES, PHASES, SCHEMA_1_CONFIG_FIELDS

SET_BY_HARNESS = ("max_seq_len",)
CONFIG_FIELDS = tuple(
    f.name for f in dataclasses.fields(ReformerConfig) if f.name not in SET_BY_HARNESS
)
DEFAULTS = {f.name: f.default for f in dataclasses.fields(ReformerConfig)}
# Every ReformerConfig field of schema version 1. A quality run's identity (its checkpoint
# and point key) hashes the whole config; a field added since joins it only away from its
# default, so runs trained before the field existed keep their keys and checkpoints.
SCHEMA_1_MODEL_FIELDS = SCHEMA_1_CONFIG_FIELDS | {"dup_correction", "dropout", "max_seq_len"}


def config_identity(config: ReformerConfig) -> dict[str, Any]:
    """The config as a dict for hashing: schema-1 fields always, later ones when set."""
    return {
        name: value
        for name, value in dataclasses.asdict(config).items()
        if name in SCHEMA_1_MODEL_FIELDS or value != DEFAULTS[name]
    }


# What one attention layer does not have (null in its rows), and the LM-only fields its rows
# leave out; n_layers is 1.
_NOT_A_LAYER = ("reversible", "d_ff", "ff_chunks")
_LM_ONLY = ("vocab_size", "axial_shape")
_LSH_ONLY = ("n_hashes", "bucket_size", "n_buckets")
# Local attention chunks by bucket_size but hashes nothing.
_HASH_ONLY = ("n_hashes", "n_buckets")


@dataclass(frozen=True, kw_only=True)
class Workload:
    """How a model point is run; none of it changes the model."""

    # "fwd" (no_grad) | "fwd_bwd" | "train_step" (adds an AdamW update) | "decode"
    # (generation: prefill, then one token at a time; the decode suite)
    phase: str
    seq_len: int
    batch: int = 1
    dtype: str = "float32"
    device: str = "cpu"
    num_threads: int | None = None  # torch threads in the child; None: torch's default

    def __post_init__(self) -> None:
        if self.phase not in PHASES:
            raise ValueError(f"phase={self.phase!r} is unknown; allowed: {PHASES}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype={self.dtype!r} is unknown; allowed: {DTYPES}")
        for name in ("seq_len", "batch"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)!r} must be a positive int")


def model_fields(model: str, config: ReformerConfig, workload: Workload) -> dict[str, Any]:
    """The row fields that identify a model point (what the harness hashes for resume).

    Fields that do not apply are null: a single layer has no depth, FF or reversibility
    (n_layers 1), exact attention has no hashing. Config fields outside schema 1 appear only
    when set away from their default (see SCHEMA_1_CONFIG_FIELDS).
    """
    fields: dict[str, Any] = {"model": model}
    for name in CONFIG_FIELDS:
        value = getattr(config, name)
        if name in SCHEMA_1_CONFIG_FIELDS or value != DEFAULTS[name]:
            fields[name] = list(value) if isinstance(value, tuple) else value
    fields |= {
        "phase": workload.phase,
        "batch": workload.batch,
        "seq_len": workload.seq_len,
        "dtype": workload.dtype,
        "device": workload.device,
        "num_threads": workload.num_threads,
    }
    if model_kind(model) in ("layer", "peer"):
        fields |= dict.fromkeys(_NOT_A_LAYER) | {"n_layers": 1}
        for name in _LM_ONLY:
            del fields[name]
    if config.attention == "local":
        fields |= dict.fromkeys(_HASH_ONLY)
    elif config.attention != "lsh":
        fields |= dict.fromkeys(_LSH_ONLY)
    return fields
