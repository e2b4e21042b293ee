"""Model configuration shared by ReformerLM, TransformerLM and every suite.

Every ablation switch is one field, so a sweep changes fields, not classes: a model is
``ReformerLM(ReformerConfig(...))`` or ``ReformerLM(PRESETS[name].replace(...))``.
Validation happens in ``__post_init__`` and names the field and the values it allows.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from reformer.checks import require_bool
from reformer.lsh.dispatch import validate_backend
from reformer.lsh.hashing import validate_n_buckets
from reformer.lsh.layout import SLICE_ELEMENTS

ATTENTIONS = ("lsh", "full", "sdpa", "local")
# The attentions that run through the LSH backends (reformer.lsh.dispatch): the same
# kernels, "local" in position order with one round.
BACKEND_ATTENTIONS = ("lsh", "local")


@dataclass(kw_only=True)
class ReformerConfig:
    vocab_size: int = 256  # tokens are ids in [0, vocab_size)
    d_model: int = 256  # width of the residual stream (each reversible half is d_model too)
    n_heads: int = 4  # d_head = d_model // n_heads
    n_layers: int = 6
    d_ff: int = 1024  # hidden width of the feed-forward block
    # "lsh" (Reformer sec. 2) | "full" (softmax(QK^T)V) | "sdpa" | "local" (chunks of
    # bucket_size in position order, each seeing itself and the one before: LSH unhashed)
    attention: str = "lsh"
    n_hashes: int = 4  # LSH rounds; more rounds = fewer missed neighbours, more compute
    # (attention="local" runs one round whatever this says: it has nothing to hash)
    bucket_size: int = 64  # chunk length c: each chunk attends to itself and the previous one
    n_buckets: int | tuple[int, ...] | None = None  # None: 2*L/bucket_size (factorised if large)
    dup_correction: bool = True  # count a key seen in several rounds once (Reformer sec. 2)
    causal: bool = True
    reversible: bool = True  # RevNet residuals (Reformer sec. 3); False = pre-LN residuals
    ff_chunks: int = 1  # split the feed-forward over the sequence into this many chunks
    dropout: float = 0.0
    axial_shape: tuple[int, int] | None = None  # axial positional embedding; None = learned
    max_seq_len: int = 65536
    seed: int = 0  # seeds every layer's own generator (hash rotations, dropout masks)
    # LSH attention implementation (reformer.lsh.dispatch): "auto" (Triton for CUDA tensors
    # within its limits, the fused C kernel for float32 CPU tensors, each where it can run
    # here; else torch) | "torch" | "triton" | "cpu"
    backend: str = "auto"
    # Logits per batched op of the torch LSH path (batch rows × heads × chunks × c × 2c,
    # about 10 bytes each live in backward): more means fewer, larger ops and more
    # transient memory. It never changes the result (like trax's n_parallel_heads).
    slice_elements: int = SLICE_ELEMENTS

    def __post_init__(self) -> None:
        for name in ("dup_correction", "causal", "reversible"):
            require_bool(name, getattr(self, name))
        _positive(
            self,
            "vocab_size",
            "d_model",
            "n_heads",
            "n_layers",
            "d_ff",
            "n_hashes",
            "bucket_size",
            "ff_chunks",
            "max_seq_len",
            "slice_elements",
        )
        if self.d_model % self.n_heads:
            allowed = [h for h in range(1, self.d_model + 1) if self.d_model % h == 0]
            raise ValueError(
                f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}; "
                f"allowed n_heads here: {allowed}"
            )
        if self.attention not in ATTENTIONS:
            raise ValueError(f"attention={self.attention!r} is unknown; allowed: {ATTENTIONS}")
        validate_backend(self.backend)
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout={self.dropout} must be in [0, 1)")
        if self.n_buckets is not None:
            validate_n_buckets(self.n_buckets)
        if self.axial_shape is not None:
            if len(self.axial_shape) != 2 or min(self.axial_shape) < 1:
                raise ValueError(f"axial_shape={self.axial_shape} must be two positive ints")
            covered = self.axial_shape[0] * self.axial_shape[1]
            if covered < self.max_seq_len:
                raise ValueError(
                    f"axial_shape={self.axial_shape} covers {covered} positions, "
                    f"fewer than max_seq_len={self.max_seq_len}"
                )

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    def replace(self, **changes: Any) -> ReformerConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


def _positive(cfg: ReformerConfig, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r} must be a positive int")


# The library's own flavours. The suites keep the models they alone run beside them
# (suites/ci/presets.py, suites/quality/presets.py, suites/grids/_common.py's QUICK_MODEL).
PRESETS: dict[str, ReformerConfig] = {
    # Tiny flavour for tests and CI smoke runs.
    "debug": ReformerConfig(
        d_model=32, n_heads=2, n_layers=2, d_ff=64, n_hashes=2, bucket_size=8, max_seq_len=4096
    ),
    # The model the suites measure by default.
    "default": ReformerConfig(),
    # A long-context Reformer (the paper's long-sequence settings): LSH, reversible, the
    # feed-forward in 16 chunks and an axial position table covering every length up to 2^20.
    "long-context": ReformerConfig(
        attention="lsh", reversible=True, ff_chunks=16, axial_shape=(1024, 1024)
    ),
}
