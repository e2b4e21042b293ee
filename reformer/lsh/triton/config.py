"""Launch configuration of the Triton LSH kernels: tile sizes, warps, dot precision.

Kept free of triton imports, so the shapes a call would use can be computed (and checked
against what the ahead-of-time compile test covers) without triton or a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from reformer.lsh.dispatch import triton_limits
from reformer.lsh.layout import Layout

# Fused multiply-add in elementwise code: Triton 3.9's default, stated so that 3.10's
# change of default does not silently change results.
FP_FUSION = True


# Relative error of one float32 product in tl.dot under "tf32x3", the bound the float32
# tests give the Triton path. Each operand is split into a TF32 head (11 significant bits,
# rounded to nearest) and a TF32 tail of the remainder; the tensor cores sum head·head,
# head·tail and tail·head. The dropped tail·tail term and the tails' own rounding each
# cost up to 2^-22 of |a·b|, about 3·2^-22 in all (1.25·2^-20 if the tails were
# truncated instead); 2^-19 covers either and the float32 additions. The interpreter's
# dot is a plain float32 matmul (2^-24): tests that must hold on a GPU emulate the split.
TF32X3_PRODUCT_ERROR = 2.0**-19


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
    block_q: int = 0  # rows of a query or key tile (block_c when 0): a program owns one

    @property
    def query_tiles(self) -> int:
        """Tiles per chunk: programs per chunk of every kernel."""
        return self.block_c // (self.block_q or self.block_c)


def kernel_config(
    bucket_size: int, dim: int, dim_v: int, dtype: torch.dtype, capability: int = 90
) -> KernelConfig:
    """The launch configuration for a bucket_size, head widths and input dtype on a GPU of
    compute capability ``capability`` (90 for sm_90; the interpreter takes sm_90's)."""
    reason = triton_limits(dtype, bucket_size, dim, dim_v)
    if reason is not None:
        raise ValueError(f"backend='triton' cannot take {reason}")
    block_chunk, block_dim, block_dim_v = (
        max(16, next_power_of_2(x)) for x in (bucket_size, dim, dim_v)
    )
    # A (64, 64) tile pair and its gathered row pointers need 8 warps to stay near 255
    # registers per thread.
    num_warps = 8 if block_chunk >= 64 or max(block_dim, block_dim_v) >= 128 else 4
    precision = "tf32x3" if dtype == torch.float32 else "tf32"
    # Rows per query (and key) tile. A whole chunk per program spills registers to local
    # memory where the tiles are largest (reformer.lsh.triton.aot measures it on the real
    # specialisations): float32 (twice the bytes of 16-bit, and tf32x3 holds every dot
    # operand again as a head and a tail) at bucket_size 32 and 64, 16-bit heads of 128
    # at bucket_size 32 and 64, and the 16-bit backward at bucket_size 64 on sm_80, whose
    # mma.sync tiles take more registers than sm_90's wgmma. Smaller tiles cost more
    # programs, each gathering the chunk's keys; 16 warps instead would cap a thread at 128
    # registers and spill more.
    block_q = block_chunk
    if block_chunk >= 32 and (dtype == torch.float32 or max(block_dim, block_dim_v) >= 128):
        block_q = 16
    elif block_chunk == 64 and capability < 90:
        block_q = 32
    return KernelConfig(
        block_chunk,
        block_dim,
        block_dim_v,
        num_warps=num_warps,
        precision=precision,
        block_q=block_q,
    )


def next_power_of_2(value: int) -> int:
    return 1 << max(0, (value - 1).bit_length())


# CUDA's limit on grid axis 0 (axes 1 and 2 stop at 65,535).
MAX_GRID_X = 2**31 - 1


def launch_grid(layout: Layout, tiles: int = 1) -> tuple[int]:
    """Grid of a kernel launch: one axis of chunks_per_round · B · H · ``tiles`` programs
    (``tiles`` programs per chunk, ``KernelConfig.query_tiles``).

    B·H alone passes the 65,535 of grid axes 1 and 2 at long batches (a batch of 4,096
    sequences of 16 heads), so everything goes on axis 0 and the kernels unfold it."""
    programs = layout.chunks_per_round * layout.batch * layout.n_heads * tiles
    if programs > MAX_GRID_X:
        raise ValueError(
            f"{programs} programs per launch (chunks per round x batch x heads) exceed "
            f"CUDA's grid limit {MAX_GRID_X}; split the batch"
        )
    return (programs,)
