"""Launch configuration of the Triton LSH kernels: tile sizes, warps, dot precision.

Kept free of triton imports, so the shapes a call would use can be computed (and checked
against what the ahead-of-time compile test covers) without triton or a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from reformer.backends import triton_limits

# Fused multiply-add in elementwise code: Triton 3.9's default, stated so that 3.10's
# change of default does not silently change results.
FP_FUSION = True


@dataclass(frozen=True)
class KernelConfig:
    """Compile-time shape of one launch: tile sizes (powers of two, >= 16 for tl.dot) and
    warps per program. ``precision`` is tl.dot's input precision for float32 inputs:
    "tf32x3" splits each operand into two TF32 parts and sums three tensor-core products,
    close to float32 accuracy (plain TF32 would drop 13 mantissa bits; "ieee" FMA loops
    compile for minutes and run far slower). It does not apply to float16/bfloat16."""

    block_c: int
    block_d: int
    block_dv: int
    num_warps: int
    precision: str


def kernel_config(chunk: int, dim: int, dim_v: int, dtype: torch.dtype) -> KernelConfig:
    """The launch configuration for a chunk size, head widths and input dtype."""
    reason = triton_limits(dtype, chunk, dim, dim_v)
    if reason is not None:
        raise ValueError(f"backend='triton' cannot take {reason}")
    block_chunk, block_dim, block_dim_v = (max(16, next_power_of_2(x)) for x in (chunk, dim, dim_v))
    # A (64, 64) tile pair and its gathered row pointers need 8 warps to stay near 255
    # registers per thread.
    num_warps = 8 if block_chunk >= 64 or max(block_dim, block_dim_v) >= 128 else 4
    precision = "tf32x3" if dtype == torch.float32 else "tf32"
    return KernelConfig(
        block_chunk, block_dim, block_dim_v, num_warps=num_warps, precision=precision
    )


def next_power_of_2(value: int) -> int:
    return 1 << max(0, (value - 1).bit_length())
