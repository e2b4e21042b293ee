"""Which implementation runs LSH attention: three backends and "auto", which picks one.

- ``"torch"``: ``reformer.lsh.torch_path`` (loops of PyTorch ops). Runs on every device and
  dtype, is deterministic, and is the path checked against ``reformer.reference`` to 1e-9.
- ``"triton"``: ``reformer.lsh.triton`` (fused Triton kernels, forward and backward). Needs
  the ``triton`` package and a CUDA tensor, or ``TRITON_INTERPRET=1`` (Triton's CPU
  interpreter, used by the tests). float16, bfloat16 and float32; bucket_size up to 64,
  d_head up to 128 (64 in float32).
- ``"cpu"``: ``reformer.lsh.cpu`` (a fused C kernel, forward and backward, compiled with the
  system's C compiler on first use and cached). float32 CPU tensors; deterministic; checked
  against the torch path by the tests. Needs a C compiler (``cpu_kernel_unavailable``).
- ``"auto"``: Triton for CUDA tensors when Triton can run here (``triton_runnable``) and
  the call is within its limits; the fused C kernel for float32 CPU tensors when it builds
  here; else torch. Without a compiler auto is the torch path, silently (the default
  install needs none); any other failure to build or load the kernel means the torch
  path with one warning, once per process tree (``WARNED_ENV``), never an exception.

``resolve_backend`` says which one a call uses, so a benchmark row records the backend
that actually ran. This module imports triton only inside the one-off probe.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import shutil
import sysconfig
import warnings

import torch

BACKENDS = ("auto", "torch", "triton", "cpu")
# Largest bucket_size and head width the Triton kernels are built for (tile sides, after
# rounding up to a power of two). The ahead-of-time compile test checks these largest
# tiles against the shared memory and registers of sm_80 and sm_90; float32 tiles take
# twice the shared memory, and at d_head 128 they overflow it.
TRITON_MAX_BUCKET_SIZE = 64
TRITON_MAX_HEAD = {torch.float16: 128, torch.bfloat16: 128, torch.float32: 64}
TRITON_DTYPES = tuple(TRITON_MAX_HEAD)


def validate_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is unknown; allowed: {BACKENDS}")


@functools.cache
def triton_installed() -> bool:
    return importlib.util.find_spec("triton") is not None


def _launcher_prerequisites() -> str | None:
    """What Triton lacks to build a kernel launcher on this machine, or None. Triton
    compiles each launcher as a C extension the first time a kernel runs, with the
    compiler and the Python headers it finds the way checked here (triton.runtime.build):
    where either is missing every launch fails, however well the kernel compiled."""
    compiler = os.environ.get("CC") or shutil.which("gcc") or shutil.which("clang")
    if not compiler:
        return "no C compiler (Triton builds its launchers with gcc or clang, or $CC)"
    scheme = sysconfig.get_default_scheme()
    if scheme == "posix_local":  # Debian's scheme, mapped as triton maps it
        scheme = "posix_prefix"
    include = sysconfig.get_paths(scheme=scheme)["include"]
    if not os.path.exists(os.path.join(include, "Python.h")):
        return f"no Python.h in {include} (install the python3-dev headers)"
    return None


@functools.cache
def triton_runnable() -> str | None:
    """None when the Triton kernels can run on this machine, else the reason they cannot.

    Probed once per process and cached: triton installed, a C compiler and Python.h for
    its launchers, and with CUDA present a tiny kernel compiled, launched and checked on
    the current device (reformer.lsh.triton.probe). Calls under TRITON_INTERPRET=1 run in
    numpy and need none of this, so ``resolve_backend`` does not ask then."""
    if not triton_installed():
        return "triton is not installed"
    missing = _launcher_prerequisites()
    if missing is not None:
        return missing
    if torch.cuda.is_available():
        try:
            from reformer.lsh.triton.probe import probe_launch

            probe_launch()
        except Exception as exc:  # any failure means the kernels would fail too
            return f"a probe kernel failed on the GPU: {type(exc).__name__}: {str(exc)[:300]}"
    return None


def cpu_kernel_reason() -> str | None:
    """Why the fused CPU kernel cannot run in this process, or None (probed once)."""
    from reformer.lsh.cpu.build import cpu_kernel_unavailable  # builds on first use

    return cpu_kernel_unavailable()


# The fallbacks already warned about in this process and the processes that started it
# (each a short hash of its message), so a sweep's points, each in a child process, and a
# DataLoader's workers do not repeat their parent's warning.
WARNED_ENV = "REFORMER_FALLBACK_WARNED"


@functools.cache
def _warn_fallback(where: str, kernels: str, reason: str) -> None:
    """One warning per process tree and reason when auto falls back to the torch path."""
    message = f"backend='auto' uses the torch path on {where}: {kernels} cannot run here ({reason})"
    key = hashlib.sha256(message.encode()).hexdigest()[:12]
    warned = [k for k in os.environ.get(WARNED_ENV, "").split(",") if k]
    if key in warned:
        return
    warnings.warn(message, RuntimeWarning, stacklevel=4)
    os.environ[WARNED_ENV] = ",".join([*warned, key])


def _warn_auto_fallback(reason: str) -> None:
    """auto on CUDA where the Triton kernels cannot run."""
    _warn_fallback("CUDA", "the Triton kernels", reason)


def _warn_cpu_fallback(reason: str) -> None:
    """auto on a float32 CPU tensor where the fused CPU kernel cannot be built."""
    _warn_fallback("the CPU", "the fused CPU kernel", reason)


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
    if bucket_size > TRITON_MAX_BUCKET_SIZE or widest > TRITON_MAX_HEAD[dtype]:
        return (
            f"bucket_size={bucket_size}, d_head={widest} (the Triton kernels take "
            f"bucket_size up to {TRITON_MAX_BUCKET_SIZE} and d_head up to "
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
    """The backend ("torch", "triton" or "cpu") that LSH attention uses for a call.

    Raises ValueError naming ``backend`` when it is unknown, or when "triton" is asked for
    where it cannot run: triton not installed, a non-CUDA device without TRITON_INTERPRET=1,
    a dtype or shape outside the kernels' limits, or a machine where Triton cannot launch
    (``triton_runnable``); or when "cpu" is asked for with a non-CPU tensor, a dtype other
    than float32, or no working C compiler. "auto" falls back to torch there.
    """
    validate_backend(backend)
    device = torch.device(device)
    if backend == "torch":
        return "torch"
    if backend == "cpu":
        return _require_cpu_kernel(device, dtype)
    runnable = device.type == "cuda" or triton_interpreting()
    if backend == "auto":
        if device.type == "cpu" and dtype == torch.float32:
            return _auto_cpu()
        if device.type != "cuda" or triton_limits(dtype, bucket_size, d_head, d_value):
            return "torch"
        if not triton_installed():
            return "torch"  # the documented default without the [gpu] extra: no warning
        reason = triton_runnable()
        if reason is not None:
            _warn_auto_fallback(reason)
            return "torch"
        return "triton"
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
    reason = None if device.type != "cuda" else triton_runnable()
    if reason is not None:
        raise ValueError(
            f"backend='triton' cannot run on this machine: {reason}; use backend='torch' or 'auto'"
        )
    return "triton"


def probe_cpu_kernel() -> str:
    """The backend auto gives float32 CPU tensors here, "cpu" or "torch", found now: the
    fused kernel is built (or its failure found) and a fallback warned about, once for this
    process and the processes it starts afterwards. A sweep calls it before its first
    point's process starts, so its points neither compile nor warn again."""
    return _auto_cpu()


def _auto_cpu() -> str:
    """auto on a float32 CPU tensor: the fused kernel when it runs here, else torch."""
    from reformer.lsh.cpu.build import find_compiler

    if find_compiler() is None:
        return "torch"  # the documented default without a compiler: no warning
    reason = cpu_kernel_reason()
    if reason is not None:
        _warn_cpu_fallback(reason)
        return "torch"
    return "cpu"


def _require_cpu_kernel(device: torch.device, dtype: torch.dtype) -> str:
    if device.type != "cpu":
        raise ValueError(
            f"backend='cpu' needs a CPU tensor (got device {device}); use backend='torch' or 'auto'"
        )
    if dtype != torch.float32:
        raise ValueError(
            f"backend='cpu' takes float32 (got {dtype}); use backend='torch' or 'auto'"
        )
    reason = cpu_kernel_reason()
    if reason is not None:
        raise ValueError(
            f"backend='cpu' cannot run on this machine: {reason}; use backend='torch' or 'auto'"
        )
    return "cpu"
