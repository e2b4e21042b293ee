"""Ahead-of-time compilation of the LSH kernels for a GPU that is not there.

``triton.compile(ASTSource(...), target=GPUTarget("cuda", 90, 32))`` builds PTX and a
cubin on a machine without a GPU. This catches what Triton's CPU interpreter forgives
(tl.dot shape and dtype rules, shared-memory overflow, register pressure). Registers
come from the cubin (``cuobjdump -res-usage``, shipped with triton): the compiled kernel
only learns them from the driver when loaded.

The shipped configurations are the envelope of what ``kernel_config`` can return: the
smallest tiles with every optional branch off, and the largest tiles with every branch on
(resource use grows with tile size and with the branches), for each dtype and kernel.
"""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass

import torch
import triton

from reformer.backends import TRITON_MAX_CHUNK, TRITON_MAX_HEAD
from reformer.kernels.config import FP_FUSION, KernelConfig, kernel_config

KERNELS = ("lsh_forward_round", "lsh_backward_query_round", "lsh_backward_key_round")
_POINTER_TYPES = {
    "QK": "in",
    "V": "in",
    "DO": "in",
    "SORT": "*i32",
    "CHUNK_OF": "*i32",
    "VALID": "*i8",
}
_TRITON_DTYPE = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32"}
# Per-block limits: shared memory (opt-in maximum) and the register file.
SHARED_LIMIT = {80: 163 * 1024, 90: 227 * 1024}
MAX_REGISTERS_PER_THREAD = 255
REGISTERS_PER_BLOCK = 64 * 1024


@dataclass(frozen=True)
class Variant:
    kernel: str
    dtype: torch.dtype
    config: KernelConfig
    branches: bool  # CAUSAL, HAS_VALID, COUNTS, LOOK_BACK all on (and FIRST off), or all off

    def __str__(self) -> str:
        return (
            f"{self.kernel}[{_TRITON_DTYPE[self.dtype]}, c{self.config.block_c}, "
            f"d{self.config.block_d}, w{self.config.num_warps}, "
            f"{'all branches' if self.branches else 'no branches'}]"
        )


@dataclass(frozen=True)
class Usage:
    shared_bytes: int  # dynamic (Triton's) plus static shared memory per block
    registers: int  # per thread
    spill_bytes: int  # stack frame per thread (register spills)
    threads: int


def shipped_variants() -> list[Variant]:
    variants = []
    for dtype in _TRITON_DTYPE:
        smallest = kernel_config(1, 1, 1, dtype)
        largest = kernel_config(
            TRITON_MAX_CHUNK, TRITON_MAX_HEAD[dtype], TRITON_MAX_HEAD[dtype], dtype
        )
        for kernel in KERNELS:
            variants.append(Variant(kernel, dtype, smallest, branches=False))
            variants.append(Variant(kernel, dtype, largest, branches=True))
    return variants


def compiler_process() -> None:
    """Initialiser of a process that compiles: under TRITON_INTERPRET=1 ``triton.jit``
    would build interpreter functions, which cannot be compiled. Runs before the kernels
    are imported (they are imported lazily below)."""
    os.environ.pop("TRITON_INTERPRET", None)


def _kernels():
    from reformer.kernels import lsh_triton

    return lsh_triton


def _signature(kernel: str, dtype: torch.dtype) -> tuple[dict[str, str], list[str]]:
    params = list(inspect.signature(getattr(_kernels(), kernel).fn).parameters)
    signature = {}
    for name in params:
        if name in _POINTER_TYPES:
            kind = _POINTER_TYPES[name]
            signature[name] = f"*{_TRITON_DTYPE[dtype]}" if kind == "in" else kind
        elif name.isupper() and name not in (
            "BLOCK_C",
            "BLOCK_D",
            "BLOCK_DV",
            "CAUSAL",
            "HAS_VALID",
            "COUNTS",
            "LOOK_BACK",
            "FIRST",
            "PRECISION",
        ):
            signature[name] = "*fp32"  # statistics and float32 accumulators
        elif name.isupper():
            signature[name] = "constexpr"
        else:
            signature[name] = "fp32" if name == "scale" else "i32"
    return signature, params


def compile_variant(variant: Variant, capability: int) -> Usage:
    """Compile one variant for sm_<capability> and read its resource use."""
    signature, params = _signature(variant.kernel, variant.dtype)
    config, on = variant.config, variant.branches
    constexprs = dict(
        BLOCK_C=config.block_c,
        BLOCK_D=config.block_d,
        BLOCK_DV=config.block_dv,
        CAUSAL=on,
        HAS_VALID=on,
        COUNTS=on,
        LOOK_BACK=on,
        PRECISION=config.precision,
    )
    if "FIRST" in params:
        constexprs["FIRST"] = not on
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    source = ASTSource(
        fn=getattr(_kernels(), variant.kernel), signature=signature, constexprs=constexprs
    )
    compiled = triton.compile(
        source,
        target=GPUTarget("cuda", capability, 32),
        options={"num_warps": config.num_warps, "enable_fp_fusion": FP_FUSION},
    )
    registers, stack, static_shared = _cubin_usage(compiled.asm["cubin"])
    return Usage(
        shared_bytes=compiled.metadata.shared + static_shared,
        registers=registers,
        spill_bytes=stack,
        threads=32 * config.num_warps,
    )


def _cubin_usage(cubin: bytes) -> tuple[int, int, int]:
    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as file:
        file.write(cubin)
        file.flush()
        report = subprocess.run(
            [tool, "-res-usage", file.name], capture_output=True, text=True, check=True
        ).stdout
    found = re.search(r"REG:(\d+) STACK:(\d+) SHARED:(\d+)", report)
    if found is None:
        raise RuntimeError(f"no resource usage in cuobjdump's report:\n{report}")
    registers, stack, shared = (int(x) for x in found.groups())
    return registers, stack, shared


def limit_violations(usage: Usage, capability: int) -> list[str]:
    """What exceeds the device's per-block limits (empty when it fits)."""
    problems = []
    if usage.shared_bytes > SHARED_LIMIT[capability]:
        problems.append(f"shared memory {usage.shared_bytes} B > {SHARED_LIMIT[capability]} B")
    if usage.registers > MAX_REGISTERS_PER_THREAD:
        problems.append(f"{usage.registers} registers/thread > {MAX_REGISTERS_PER_THREAD}")
    if usage.registers * usage.threads > REGISTERS_PER_BLOCK:
        problems.append(
            f"{usage.registers} registers x {usage.threads} threads > {REGISTERS_PER_BLOCK}"
        )
    return problems
