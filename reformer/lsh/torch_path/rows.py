"""Row access and reusable buffers for the torch path's slices: gathers and scatters by
position on a 2-D row view of (B, H, Lp, ...) memory, and workspace buffers that every
slice of a call reuses."""

from __future__ import annotations

import math

import torch

from reformer.lsh.layout import Layout


class Rows:
    """Row access to (B, H, Lp, ...) tensors for one (batch, head) group, by position.

    Flattens (B, H, Lp) into one row index so gathers and scatters are index_select and
    index_add on a 2-D view, which are much faster than 4-D gather/scatter on CPU. The
    tensors may have any strides whose (B, H, Lp) steps are whole rows (the (B, Lp, H, D)
    memory of a projection's output seen as (B, H, Lp, D), say), so nothing is copied
    into (B, H, Lp, D) order first.
    """

    def __init__(
        self, layout: Layout, group: tuple[int, int, int, int], device: torch.device
    ) -> None:
        b0, b1, h0, h1 = group
        self.group = group
        self.batches = torch.arange(b0, b1, device=device)[:, None, None]
        self.heads = torch.arange(h0, h1, device=device)[None, :, None]

    def take(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """x (B, H, Lp, D) or (B, H, Lp) at positions (b, h, m) -> (b, h, m[, D])."""
        table, flat = _row_index(x, self.batches, self.heads, positions)
        return table.index_select(0, flat).view(*positions.shape, *x.shape[3:])

    def add(self, target: torch.Tensor, positions: torch.Tensor, values: torch.Tensor) -> None:
        """target (b, h, Lp, D), the group's own buffer or its slice of a (B, H, Lp, D)
        tensor, += values at positions."""
        table, flat = self._local(target, positions)
        table.index_add_(0, flat, values.reshape(-1, table.shape[-1]).to(target.dtype))

    def put(self, target: torch.Tensor, positions: torch.Tensor, values: torch.Tensor) -> None:
        """target (b, h, Lp, D), the group's own buffer, at positions = values."""
        table, flat = self._local(target, positions)
        table.index_copy_(0, flat, values.reshape(-1, table.shape[-1]).to(target.dtype))

    def take_local(self, x: torch.Tensor, positions: torch.Tensor, grid) -> torch.Tensor:
        """A group's own (b, h, Lp) tensor at positions (b, h, n·c) -> (b, h, n, c)."""
        table, flat = self._local(x, positions)
        return table.index_select(0, flat).view(positions.shape).unflatten(-1, grid)

    def _local(self, target: torch.Tensor, positions: torch.Tensor):
        b0, _, h0, _ = self.group
        return _row_index(target, self.batches - b0, self.heads - h0, positions)


def rows_addressable(x: torch.Tensor) -> bool:
    """Whether :class:`Rows` can address x (B, H, Lp[, D]) in place: its last dimension is
    contiguous and every other step is a whole number of rows."""
    if x.dim() == 3:
        return True
    row = x.shape[-1]
    return (
        x.stride(-1) == 1
        and x.storage_offset() % row == 0
        and all(stride % row == 0 for stride in x.stride()[:3])
    )


def _row_index(x: torch.Tensor, batches, heads, positions):
    """(2-D row view of x's memory, flat row index of (batches, heads, positions))."""
    if x.dim() == 3:
        x = x.unsqueeze(-1)
    row = x.shape[-1]
    step_b, step_h, step_l = (stride // row for stride in x.stride()[:3])
    extent = (
        sum((size - 1) * stride for size, stride in zip(x.shape[:3], x.stride()[:3], strict=True))
        // row
        + 1
    )
    table = x.as_strided((extent, row), (row, 1), x.storage_offset())
    flat = (batches * step_b + heads * step_h + positions * step_l).reshape(-1)
    return table, flat


class Workspace:
    """Buffers that every slice of one call reuses, by name, for its large temporaries.

    On the CPU a fresh multi-MiB tensor is fresh pages from the kernel (glibc maps large
    blocks and unmaps them when freed), and faulting them in cost more than the ops that
    fill them. Each buffer grows to the largest slice and lives for the call, which is no
    more than the peak one slice already had.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.buffers: dict[tuple[str, torch.dtype], torch.Tensor] = {}

    def get(self, name: str, shape, dtype: torch.dtype) -> torch.Tensor:
        """An uninitialised (shape) tensor of dtype, the same memory on every call."""
        size = math.prod(shape)
        buffer = self.buffers.get((name, dtype))
        if buffer is None or buffer.numel() < size:
            buffer = torch.empty(size, dtype=dtype, device=self.device)
            self.buffers[(name, dtype)] = buffer
        return buffer[:size].view(shape)
