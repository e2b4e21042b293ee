"""Names of models and attentions, said once: grids, the harness, the quality suite and the
reports all spell them through this module.

Attention, as ``ReformerConfig.attention`` names it (``reformer.config.ATTENTIONS``):

- ``"lsh"``: shared-QK LSH attention (Reformer sec. 2); with N hash rounds it is ``lsh-N``;
- ``"full"``: separate Q, K, V and the (L, L) score matrix materialised;
- ``"sdpa"``: the same math through torch's fused ``scaled_dot_product_attention``;
- ``"local"``: shared-QK chunked look-back attention in position order (LSH unhashed).

Models (a result row's ``model``):

- whole language models, tokens (B, L) -> loss: ``transformer-<attention>`` (the baseline)
  and ``reformer-<attention>[-rev]`` (``-rev``: reversible residuals);
- one attention layer, x (B, L, d_model) -> (B, L, d_model): ``attn-<attention>``;
- peer implementations of LSH attention: ``peer-reformer-pytorch``, ``peer-hf``.

What a trained shared-QK model computes when run (the quality suite's ``train_attention``
and ``eval_attention``): ``lsh-N`` (LSH with N rounds), ``local`` (local attention, the
same weights in local layers), or ``shared-full``, exact softmax attention computed by the
same shared-QK layers as one chunk covering the sequence (the paper's Table 2 "Full"). The
Transformer baseline runs ``sdpa``. Report labels come from :func:`label`: ``LSH-N``,
``Local``, ``Full``, ``SDPA``.

Rows of schema 1 (docs/results.md, "Names across versions") spelled

- ``shared-full`` as ``"full"`` (the word ``ReformerConfig`` uses for separate-QK
  attention), and gave such a model ``attention="full"``;
- the memory columns in ``_mb`` (``peak_mb``...), though they hold MiB: now ``_mib``;
- what a point measures (fwd, fwd_bwd, train_step, decode) ``pass``: now ``phase``;
- the paper-scale grid's mode ``"full"``, the name of an attention too: now ``"paper"``.

:func:`current_names` maps them when rows are read, and :func:`schema_1_names` and
:func:`schema_1_mode` map back for point keys, grid ids and checkpoint names, so what was
measured or trained under the old names is found again.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Protocol

# ReformerConfig.attention's values (reformer.config.ATTENTIONS), repeated here so a reader
# of rows needs no model; a test checks the two agree.
ATTENTIONS = ("lsh", "full", "sdpa", "local")
LM_FAMILIES = ("transformer", "reformer")
SHARED_FULL = "shared-full"
SDPA = "sdpa"
LOCAL = "local"
# The attention probe's (suites.quality.probe) exact attention in which a query may attend
# to itself at its true logit: what plain dot-product attention on shared QK computes.
FULL_WITH_SELF = "full-with-self"
RUN_ATTENTIONS = f"{SHARED_FULL!r}, {SDPA!r}, {LOCAL!r} or 'lsh-N' with N >= 1 hash rounds"
_LSH_N = re.compile(r"lsh-([1-9][0-9]*)")
_SCHEMA_1_FULL = "full"
# The paper-scale grid's mode (suites.rows.schema.MODES), and how schema 1 spelled it.
PAPER = "paper"
_SCHEMA_1_PAPER = "full"
# Fields schema 2 renamed: {today's name: schema 1's}.
_SCHEMA_1_FIELDS = {
    "peak_mib": "peak_mb",
    "reserved_mib": "reserved_mb",
    "nvml_peak_mib": "nvml_peak_mb",
    "saved_mib": "saved_mb",
    "phase": "pass",
}
_RENAMED_FIELDS = {old: new for new, old in _SCHEMA_1_FIELDS.items()}
# The first schema version that writes today's names.
_CURRENT_NAMES_SINCE = 2
LAYER_PREFIX = "attn-"
# An evaluation by teacher-forced incremental decoding (reformer.decode) with the
# attention that follows: "decode-lsh-4" (the quality suite's byte LM).
DECODE_PREFIX = "decode-"
PEER_PREFIX = "peer-"
# A peer's whole language model (baselines.peer_models): "peer-lm-hf".
PEER_LM_PREFIX = "peer-lm-"


class ModelConfig(Protocol):
    """What a model's name reads from its config (``reformer.config.ReformerConfig``),
    named here as a protocol because this package must not import the model."""

    @property
    def attention(self) -> str: ...

    @property
    def reversible(self) -> bool: ...


def lm_model(family: str, config: ModelConfig) -> str:
    """Row name of a whole LM built from ``config``: transformer-<attention>,
    reformer-<attention>[-rev]."""
    if family not in LM_FAMILIES:
        raise ValueError(f"family={family!r} is unknown; allowed: {LM_FAMILIES}")
    if family == "transformer":
        return f"transformer-{config.attention}"
    return f"reformer-{config.attention}" + ("-rev" if config.reversible else "")


def layer_model(config: ModelConfig) -> str:
    """Row name of one attention layer built from ``config``: attn-<attention>."""
    return f"{LAYER_PREFIX}{config.attention}"


def model_kind(model: str) -> str:
    """ "transformer" | "reformer" (whole LMs), "layer" (attn-*), "peer-lm" (a peer's whole
    LM, peer-lm-*) or "peer" (a peer's attention layer, peer-*)."""
    for family in LM_FAMILIES:
        if model.startswith(f"{family}-"):
            return family
    if model.startswith(LAYER_PREFIX):
        return "layer"
    if model.startswith(PEER_LM_PREFIX):
        return "peer-lm"
    if model.startswith(PEER_PREFIX):
        return "peer"
    raise ValueError(
        f"model={model!r} is unknown; allowed: transformer-<attention>, "
        f"reformer-<attention>[-rev], {LAYER_PREFIX}<attention> or a "
        f"{PEER_PREFIX}<name> peer (suites.rows.names)"
    )


def lsh_name(n_hashes: int) -> str:
    """'lsh-N': LSH attention with N hash rounds."""
    return f"lsh-{int(n_hashes)}"


def parse_run_attention(name: str) -> tuple[str, int | None]:
    """'lsh-4' -> ('lsh', 4); 'shared-full' -> ('shared-full', None); 'sdpa' -> ('sdpa', None);
    'local' -> ('local', None)."""
    if name in (SHARED_FULL, SDPA, LOCAL):
        return name, None
    match = _LSH_N.fullmatch(str(name))
    if match is None:
        raise ValueError(f"attention {name!r} is unknown; allowed: {RUN_ATTENTIONS}")
    return "lsh", int(match.group(1))


def hash_rounds(name: object) -> int | None:
    """N for 'lsh-N'; None for anything else."""
    match = _LSH_N.fullmatch(str(name))
    return int(match.group(1)) if match else None


def decoded_attention(name: object) -> str | None:
    """'lsh-4' for 'decode-lsh-4' (an incremental-decoding evaluation); None otherwise."""
    text = str(name)
    if not text.startswith(DECODE_PREFIX) or hash_rounds(text[len(DECODE_PREFIX) :]) is None:
        return None
    return text[len(DECODE_PREFIX) :]


def label(name: object) -> str:
    """The report's spelling, as in the paper: 'LSH-N', 'Full', 'SDPA', 'Local'; others unchanged.
    An incremental-decoding evaluation reads 'LSH-N decoding'."""
    decoded = decoded_attention(name)
    if decoded is not None:
        return f"{label(decoded)} decoding"
    rounds = hash_rounds(name)
    if rounds is not None:
        return f"LSH-{rounds}"
    # The paper's Table 2 "Full" is exact shared-QK attention (the quality suite's shared-full);
    # "full" is the materialised separate-QK attention of the baselines: another thing.
    return {
        SHARED_FULL: "Full",
        "full": "Full (materialised)",
        SDPA: "SDPA",
        LOCAL: "Local",
        FULL_WITH_SELF: "Full, self visible",
    }.get(str(name), str(name))


def current_names(row: dict[str, Any]) -> dict[str, Any]:
    """A row with schema-1 spellings replaced by today's: a copy where any changed, else
    ``row`` itself. Rows of schema 2 or later (``schema_version``) are today's already, and
    a row read once is read the same again (it is idempotent)."""
    version = row.get("schema_version")
    if isinstance(version, int) and version >= _CURRENT_NAMES_SINCE:
        return row
    renamed = _current_fields(row)
    if renamed.get("mode") == _SCHEMA_1_PAPER:
        renamed = renamed if renamed is not row else dict(row)
        renamed["mode"] = PAPER
    return _current_attention(renamed)


def _current_fields(row: dict[str, Any]) -> dict[str, Any]:
    """Renamed fields under today's names, in their place (a field already there under
    today's name is kept and the old one left as it is)."""
    if not any(old in row for old in _RENAMED_FIELDS):
        return row
    return {
        (new if (new := _RENAMED_FIELDS.get(name)) and new not in row else name): value
        for name, value in row.items()
    }


def _current_attention(row: dict[str, Any]) -> dict[str, Any]:
    """Schema 1's exact shared-QK attention "full" as "shared-full"."""
    if row.get("train_attention") is None or _SCHEMA_1_FULL not in (
        row.get("train_attention"),
        row.get("eval_attention"),
    ):
        return row
    row = dict(row)
    if row["train_attention"] == _SCHEMA_1_FULL:
        row["train_attention"] = SHARED_FULL
        row["attention"] = "lsh"  # the model's layers: shared-QK LSH, run as one chunk
    if row.get("eval_attention") == _SCHEMA_1_FULL:
        row["eval_attention"] = SHARED_FULL
    return row


def schema_1_names(fields: dict[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`current_names` on a point's fields: the spelling point keys
    were computed on (a copy where any changed)."""
    if any(name in fields for name in _SCHEMA_1_FIELDS):
        fields = {_SCHEMA_1_FIELDS.get(name, name): value for name, value in fields.items()}
    if SHARED_FULL not in (fields.get("train_attention"), fields.get("eval_attention")):
        return fields
    fields = dict(fields)
    if fields["train_attention"] == SHARED_FULL:
        fields["train_attention"] = _SCHEMA_1_FULL
        fields["attention"] = _SCHEMA_1_FULL
    if fields.get("eval_attention") == SHARED_FULL:
        fields["eval_attention"] = _SCHEMA_1_FULL
    return fields


def schema_1_mode(mode: str) -> str:
    """A grid's mode as schema 1 spelled it (grid ids hash it)."""
    return _SCHEMA_1_PAPER if mode == PAPER else mode


def schema_1_run_attention(name: str) -> str:
    """A training attention as schema 1 spelled it (run keys and checkpoint names)."""
    return _SCHEMA_1_FULL if name == SHARED_FULL else name


def hardware_name(fields: Mapping[str, Any], device: str | None = None) -> str:
    """The hardware a measurement depends on, from a row or an environment: the GPU for
    CUDA (``device``, else the row's), else the CPU model, else the host. Point keys hash
    it, reports group by it and Ray nodes are matched on it."""
    device = str(fields.get("device") if device is None else device) or ""
    for candidate in (
        fields.get("gpu_name") if device.startswith("cuda") else None,
        fields.get("cpu_model"),
        fields.get("host"),
    ):
        if isinstance(candidate, str) and candidate.strip():
            return candidate.strip()
    return "unknown"
