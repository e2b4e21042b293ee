"""What every LSH backend shares (Reformer sec. 2): the shape of the sorted, chunked
sequence of one call (:class:`Layout`), the logits that stand for "self" and "masked", and
the small tensor helpers the torch, Triton and C paths each call.

A call's positions are sorted by (bucket, position) per round, all rounds laid end to end
as one sequence of n_hashes·Lp slots, cut into chunks of ``bucket_size``; each chunk
attends to itself and to the previous chunk, wrapping around the whole flattened
sequence. Every backend takes the same (qk, v, sort_idx, key_valid, Layout) and computes
the same function of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# The self logit: a position attends to itself only when it has nothing else to see.
SELF_LOGIT = -1e5
# The logit of a masked pair (causal, padding) in the reference and exact attention, and
# the Triton kernels' starting row maximum, so a masked pair never sets a row's maximum.
# The torch path masks with a bias instead (torch_path.slices.MASK_SCALE).
MASK_LOGIT = -1e9
# Default logit elements per slice of the torch path (batch × heads × chunks × c × 2c). A
# call's workspace holds about 16 bytes per logit (bias, scratch, dP, key and value
# windows), so 2^19 keeps it near 8 MiB, while a 2K-token, 4-head layer still runs in two
# slices per round.
SLICE_ELEMENTS = 1 << 19


@dataclass(frozen=True)
class Layout:
    """Shape of the sorted, chunked sequence for one call."""

    batch: int
    n_heads: int
    n_hashes: int
    padded_len: int  # Lp, a multiple of bucket_size
    bucket_size: int  # c, positions per chunk
    causal: bool
    dup_correction: bool
    scale: float
    slice_elements: int = SLICE_ELEMENTS

    @property
    def chunks_per_round(self) -> int:
        return self.padded_len // self.bucket_size

    @property
    def total_chunks(self) -> int:
        return self.n_hashes * self.chunks_per_round

    @property
    def look_back(self) -> bool:
        # With one chunk in all, its "previous chunk" is itself: seeing it twice adds nothing.
        return self.total_chunks > 1

    @property
    def window(self) -> int:
        return 2 * self.bucket_size if self.look_back else self.bucket_size

    @property
    def needs_counts(self) -> bool:
        # With one round a key has one slot, so it appears at most once in any window.
        return self.dup_correction and self.n_hashes > 1

    def groups(self):
        """Yield (b0, b1, h0, h1): the (batch, head) ranges processed together.

        As many (batch, head) rows as fit ``slice_elements`` logits per round go together:
        the whole batch when it fits, else blocks of batch rows with every head, else one
        batch row and a block of heads (at least one; :meth:`chunk_blocks` then cuts the
        round). Fewer, larger slices mean fewer ops; the budget bounds their memory.
        """
        per_head = self.padded_len * self.window
        budget = self.slice_elements
        if self.batch * self.n_heads * per_head <= budget:
            yield 0, self.batch, 0, self.n_heads
            return
        if self.n_heads * per_head <= budget:
            rows = budget // (self.n_heads * per_head)
            for b in range(0, self.batch, rows):
                yield b, min(b + rows, self.batch), 0, self.n_heads
            return
        heads = max(1, budget // per_head)
        for b in range(self.batch):
            for h in range(0, self.n_heads, heads):
                yield b, b + 1, h, min(h + heads, self.n_heads)

    def chunk_blocks(self, group_size: int):
        """Yield (n0, n1): blocks of chunks of one round, bounding a slice's logits."""
        step = max(1, self.slice_elements // (group_size * self.bucket_size * self.window))
        step = min(step, self.chunks_per_round)
        for start in range(0, self.chunks_per_round, step):
            yield start, min(start + step, self.chunks_per_round)


def chunk_ids(sort_idx: torch.Tensor, layout: Layout) -> torch.Tensor:
    """Global chunk of each (round, position): (B, H, R, Lp), round r's in [r·N, (r+1)·N)."""
    offsets = torch.arange(layout.n_hashes, device=sort_idx.device).view(1, 1, -1, 1)
    return (offsets * layout.chunks_per_round + round_chunk(sort_idx, layout)).to(torch.int32)


def round_chunk(sort_idx: torch.Tensor, layout: Layout) -> torch.Tensor:
    """Chunk of each position within its round's sorted order: (B, H, R, Lp) int64."""
    rank = torch.empty_like(sort_idx)
    ranks = torch.arange(layout.padded_len, device=sort_idx.device).expand_as(sort_idx)
    rank.scatter_(-1, sort_idx, ranks)
    return rank // layout.bucket_size


def sequence_major(shape, dtype, device, zero: bool = False) -> torch.Tensor:
    """A (B, H, Lp, D) tensor laid out as (B, Lp, H, D): the layout the attention module
    reads from and writes to its (B, Lp, H·D) projections, so neither side copies."""
    batch, heads, length, dim = shape
    make = torch.zeros if zero else torch.empty
    return make(batch, length, heads, dim, dtype=dtype, device=device).transpose(1, 2)


def row_dot(a: torch.Tensor, b: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """sum(a · b, -1) in ``dtype``: (b, h, Lp, D) x2 -> (b, h, Lp), contiguous, where a
    term with a = 0 is 0 whatever b holds. Backward's delta = rowsum(dO · O): an output
    entry the loss does not use (dO = 0) that is NaN (its query saw a NaN value) must not
    make delta, and so every gradient through that query's row, NaN."""
    a, b = a.to(dtype), b.to(dtype)
    return torch.mul(a, b).masked_fill_(a == 0, 0.0).sum(-1).contiguous()


def normalize_backward_(x: torch.Tensor, grad_unit: torch.Tensor) -> torch.Tensor:
    """Gradient through k = x / max(||x||, eps) (F.normalize's eps), given dL/dk, written
    into ``grad_unit`` (which is returned): (grad - [||x|| > eps] · k (k · grad)) / max(||x||,
    eps), with one (..., D) temporary besides it."""
    x = x.to(grad_unit.dtype)
    norm = x.norm(dim=-1, keepdim=True)
    clamped = norm.clamp_min(1e-12)
    unit = x / clamped
    radial = (unit * grad_unit).sum(-1, keepdim=True)
    radial.masked_fill_(norm <= 1e-12, 0.0)
    return grad_unit.sub_(unit.mul_(radial)).div_(clamped)
