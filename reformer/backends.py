"""Which implementation runs LSH attention: the torch path or the Triton kernels.

- ``"torch"``: ``reformer.lsh_core`` (loops of PyTorch ops). Runs on every device and
  dtype, is deterministic, and is the path checked against ``reformer.reference`` to 1e-9.
- ``"triton"``: ``reformer.kernels`` (fused Triton kernels, forward and backward). Needs
  the ``triton`` package and a CUDA tensor, or ``TRITON_INTERPRET=1`` (Triton's CPU
  interpreter, used by the tests). float16, bfloat16 and float32; bucket_size up to 64,
  d_head up to 128 (64 in float32).
- ``"auto"``: Triton for CUDA tensors when triton imports and the call is within its
  limits, else torch. On a CPU, auto is always torch.

``resolve_backend`` says which one a call would use, so a benchmark row can record it.
This module imports triton only to test whether it is installed.
"""

from __future__ import annotations

import functools
import importlib.util
import os

import torch

BACKENDS = ("auto", "torch", "triton")
# Largest chunk and head widths the Triton kernels are built for (tile sides, after
# rounding up to a power of two). The ahead-of-time compile test checks these largest
# tiles against the shared memory and registers of sm_80 and sm_90; float32 tiles take
# twice the shared memory, and at d_head 128 they overflow it.
TRITON_MAX_CHUNK = 64
TRITON_MAX_HEAD = {torch.float16: 128, torch.bfloat16: 128, torch.float32: 64}
TRITON_DTYPES = tuple(TRITON_MAX_HEAD)


def validate_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is unknown; allowed: {BACKENDS}")


@functools.cache
def triton_installed() -> bool:
    return importlib.util.find_spec("triton") is not None


def triton_interpreting() -> bool:
    """TRITON_INTERPRET=1: Triton runs kernels on the CPU with numpy (slow, exact semantics)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def triton_limits(
    dtype: torch.dtype, bucket_size: int, d_head: int, d_value: int | None = None
) -> str | None:
    """Why the Triton kernels cannot take this call, or None when they can."""
    if dtype not in TRITON_DTYPES:
        return f"dtype {dtype} (the Triton kernels take {TRITON_DTYPES})"
    widest = max(d_head, d_head if d_value is None else d_value)
    if bucket_size > TRITON_MAX_CHUNK or widest > TRITON_MAX_HEAD[dtype]:
        return (
            f"bucket_size={bucket_size}, d_head={widest} (the Triton kernels take "
            f"bucket_size up to {TRITON_MAX_CHUNK} and d_head up to "
            f"{TRITON_MAX_HEAD[dtype]} in {dtype})"
        )
    return None


def resolve_backend(
    backend: str,
    device: torch.device | str,
    dtype: torch.dtype,
    bucket_size: int,
    d_head: int,
    d_value: int | None = None,
) -> str:
    """The backend ("torch" or "triton") that LSH attention uses for a call.

    Raises ValueError naming ``backend`` when it is unknown, or when "triton" is asked for
    where it cannot run: triton not installed, a non-CUDA device without TRITON_INTERPRET=1,
    or a dtype or shape outside the kernels' limits.
    """
    validate_backend(backend)
    device = torch.device(device)
    if backend == "torch":
        return "torch"
    runnable = device.type == "cuda" or triton_interpreting()
    if backend == "auto":
        usable = (
            device.type == "cuda"
            and triton_installed()
            and triton_limits(dtype, bucket_size, d_head, d_value) is None
        )
        return "triton" if usable else "torch"
    reason = triton_limits(dtype, bucket_size, d_head, d_value)
    if reason is not None:
        raise ValueError(f"backend='triton' cannot take {reason}; use backend='torch' or 'auto'")
    if not triton_installed():
        raise ValueError(
            "backend='triton' needs the triton package "
            "(pip install 'reformer-bench[gpu]'); use backend='torch' or 'auto'"
        )
    if not runnable:
        raise ValueError(
            f"backend='triton' needs a CUDA tensor (got device {device}) or "
            "TRITON_INTERPRET=1; use backend='torch' or 'auto'"
        )
    return "triton"
