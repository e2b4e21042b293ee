"""Which implementation of our LSH attention a point runs: the torch path, the Triton
kernels or the fused CPU kernel.

``ReformerConfig.backend`` ("auto" | "torch" | "triton" | "cpu", resolved by
``reformer.lsh.dispatch.resolve_backend``) picks it; rows record the one used in ``backend``
("torch" | "triton" | "cpu", null for points without our LSH or local attention: exact
attention, peers). CPU grids leave the field at its default ("auto": the fused CPU kernel
for float32 where it builds, else the torch path), so their points and keys are unchanged;
a sweep of a torch-path knob (the chunks suite's slice_elements) names "torch". CUDA grids name it:
Triton where its kernels take the shape, torch beside it where a suite sweeps the backend
as an ablation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from reformer.config import BACKEND_ATTENTIONS, ReformerConfig

if TYPE_CHECKING:
    import torch

ABLATION = ("torch", "triton")


def backend_used(config: ReformerConfig, device: str, dtype: torch.dtype) -> str | None:
    """ "torch", "triton" or "cpu" for our LSH (or local) attention under ``config`` on
    ``device``; None when the config has neither. Raises ValueError where "triton" is asked for
    and cannot run (reformer.lsh.dispatch)."""
    if config.attention not in BACKEND_ATTENTIONS:
        return None
    from reformer.lsh.dispatch import resolve_backend

    return resolve_backend(config.backend, device, dtype, config.bucket_size, config.d_head)


def triton_fits(config: ReformerConfig, dtype: str) -> bool:
    """Whether the Triton kernels take this config's chunk and head width in ``dtype``."""
    from reformer.lsh.dispatch import triton_limits
    from suites.harness.dtypes import TORCH_DTYPES

    return triton_limits(TORCH_DTYPES[dtype], config.bucket_size, config.d_head) is None


def device_backend(config: ReformerConfig, device: str, dtype: str = "float32") -> ReformerConfig:
    """The config a grid measures on ``device``: on CUDA its LSH names Triton where the
    kernels take the shape, else torch; on CPU unchanged."""
    if device != "cuda" or config.attention not in BACKEND_ATTENTIONS:
        return config
    return config.replace(backend="triton" if triton_fits(config, dtype) else "torch")


def backend_ablation(
    config: ReformerConfig, device: str, dtype: str = "float32"
) -> list[ReformerConfig]:
    """The configs of a backend ablation: on CUDA, torch and (where it fits) Triton; on
    CPU the config unchanged, alone."""
    if device != "cuda" or config.attention not in BACKEND_ATTENTIONS:
        return [config]
    return [
        config.replace(backend=backend)
        for backend in ABLATION
        if backend == "torch" or triton_fits(config, dtype)
    ]
