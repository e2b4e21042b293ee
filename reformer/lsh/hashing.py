"""Angular locality-sensitive hashing (Reformer sec. 2, "LSH attention"; Andoni et al. 2015).

A vector x (d_head) is rotated by a random matrix R (d_head, n_buckets/2) and its bucket is
``argmax([xR; -xR])``. Each hash round draws its own R. For long sequences the default
number of buckets (2·L/bucket_size) is large, and a flat rotation would cost
O(L · n_buckets) = O(L²/c) time and memory; the hash is then *factorised* as trax does: a
product of independent angular hashes with small bucket counts f1·f2 ≥ 2·L/c, so the
rotation is only (d_head, f1/2 + f2/2) wide.
"""

from __future__ import annotations

import math

import torch

# Above this many buckets the default hash is factorised, as HF transformers does for
# chunk length 64: flat hashing costs d_head·n_buckets/2 per position and round, which at
# 512 buckets is as much as the chunked attention itself.
FLAT_BUCKET_LIMIT = 128
# Bound on the rotated tensor built at once while hashing (elements), so hashing memory is
# linear in L.
_HASH_BLOCK_ELEMENTS = 1 << 24


def validate_n_buckets(n_buckets: int | tuple[int, ...]) -> None:
    """Buckets come from argmax over [xR; -xR], so every factor must be even and >= 2."""
    factors = (n_buckets,) if isinstance(n_buckets, int) else tuple(n_buckets)
    if not factors or any(not isinstance(f, int) or f < 2 or f % 2 for f in factors):
        raise ValueError(
            f"n_buckets={n_buckets!r} must be an even int >= 2, or a tuple of such ints "
            "(a factorised hash), or None for 2*L/bucket_size"
        )


def resolve_n_buckets(
    n_buckets: int | tuple[int, ...] | None, seq_len: int, bucket_size: int
) -> tuple[int, ...]:
    """Bucket-count factors: ``(n,)`` for a flat hash, ``(f1, f2, ...)`` for a factorised one."""
    if n_buckets is not None:
        validate_n_buckets(n_buckets)
        return (n_buckets,) if isinstance(n_buckets, int) else tuple(n_buckets)
    target = max(2, 2 * math.ceil(seq_len / bucket_size))
    if target <= FLAT_BUCKET_LIMIT:
        return (target,)
    first = 1 << math.ceil(math.log2(math.sqrt(target)))  # a power of two >= sqrt(target)
    return (first, _even_at_least(math.ceil(target / first)))


def total_buckets(factors: tuple[int, ...]) -> int:
    return math.prod(factors)


def rotation_width(factors: tuple[int, ...]) -> int:
    return sum(f // 2 for f in factors)


def draw_rotations(
    generator: torch.Generator,
    *,
    n_heads: int,
    d_head: int,
    n_hashes: int,
    factors: tuple[int, ...],
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Fresh random rotations, shape (n_heads, d_head, n_hashes, sum(f/2)), float32.

    Drawn on the generator's device from the caller's own generator (never the global
    RNG), then moved, so the same generator state gives the same buckets on CPU and GPU.
    """
    shape = (n_heads, d_head, n_hashes, rotation_width(factors))
    rotations = torch.randn(shape, generator=generator, device=generator.device)
    return rotations.to(device)


def hash_vectors(
    vectors: torch.Tensor, rotations: torch.Tensor, factors: tuple[int, ...]
) -> torch.Tensor:
    """Buckets of ``vectors`` (B, H, L, D) under ``rotations`` (H, D, R, W): (B, H, R, L) int64.

    Buckets lie in [0, prod(factors)). Positions are processed in blocks so the rotated
    tensor never exceeds a fixed size.
    """
    batch, n_heads, seq_len, d_head = vectors.shape
    if rotations.shape[0] != n_heads or rotations.shape[1] != d_head:
        raise ValueError(
            f"rotations shape {tuple(rotations.shape)} must be (n_heads={n_heads}, "
            f"d_head={d_head}, n_hashes, n_buckets // 2)"
        )
    if rotations.shape[3] != rotation_width(factors):
        raise ValueError(
            f"rotations last dim {rotations.shape[3]} must be n_buckets // 2 = "
            f"{rotation_width(factors)} for n_buckets={factors}"
        )
    n_hashes, width = rotations.shape[2], rotations.shape[3]
    rotations = rotations.to(device=vectors.device, dtype=torch.float32)
    buckets = torch.empty(
        batch, n_heads, n_hashes, seq_len, dtype=torch.long, device=vectors.device
    )
    block = max(1, _HASH_BLOCK_ELEMENTS // max(1, batch * n_heads * n_hashes * width))
    for start in range(0, seq_len, block):
        part = vectors[:, :, start : start + block].float()
        rotated = torch.einsum("bhld,hdrw->bhrlw", part, rotations)  # (B, H, R, l, W)
        buckets[..., start : start + block] = _argmax_buckets(rotated, factors)
    return buckets


def _argmax_buckets(rotated: torch.Tensor, factors: tuple[int, ...]) -> torch.Tensor:
    """argmax over [xR; -xR] per factor, combined as a mixed-radix number.

    argmax([y; -y]) is argmax(y) when max(y) >= -min(y), else half + argmin(y); both
    return the first extremum, so ties break exactly as the concatenated argmax would.
    """
    buckets = None
    offset, radix = 0, 1
    for factor in factors:
        half = factor // 2
        part = rotated[..., offset : offset + half]
        top, top_idx = part.max(dim=-1)
        low, low_idx = part.min(dim=-1)
        factor_bucket = torch.where(top >= -low, top_idx, low_idx + half)
        buckets = factor_bucket if buckets is None else buckets + radix * factor_bucket
        offset += half
        radix *= factor
    assert buckets is not None  # validate_n_buckets: at least one factor
    return buckets


def _even_at_least(value: int) -> int:
    return max(2, value + (value % 2))
