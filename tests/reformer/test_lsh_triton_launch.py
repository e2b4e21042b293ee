"""Launch shapes of the Triton LSH kernels, checked without a GPU: the grid fits CUDA's
per-axis limits at any batch·heads, and the launches a call makes are the ones the
ahead-of-time check compiles."""

from __future__ import annotations

import pytest
import torch

from reformer.lsh.layout import Layout
from reformer.lsh.triton.config import MAX_GRID_X, kernel_config, launch_grid

# CUDA's grid limits: axis 0 up to 2^31 - 1, axes 1 and 2 up to 65,535.
CUDA_GRID_LIMITS = (2**31 - 1, 65_535, 65_535)


def _layout(batch: int, n_heads: int, padded_len: int = 4096, n_hashes: int = 4) -> Layout:
    return Layout(
        batch=batch,
        n_heads=n_heads,
        n_hashes=n_hashes,
        padded_len=padded_len,
        bucket_size=64,
        causal=True,
        dup_correction=True,
        scale=64**-0.5,
    )


def _fits(grid: tuple[int, ...]) -> bool:
    return len(grid) <= 3 and all(
        1 <= n <= cap for n, cap in zip(grid, CUDA_GRID_LIMITS[: len(grid)], strict=True)
    )


@pytest.mark.parametrize("batch,n_heads", [(1, 1), (4375, 16), (70_000, 1), (1, 70_000)])
def test_grid_fits_cuda_limits_past_65535_batch_heads(batch, n_heads):
    layout = _layout(batch, n_heads, padded_len=256)
    grid = launch_grid(layout)
    assert _fits(grid), grid
    assert grid[0] == layout.chunks_per_round * batch * n_heads  # one program per chunk


def test_grid_beyond_the_axis_limit_is_refused_with_the_reason():
    layout = _layout(2**20, 64, padded_len=2**12)
    assert layout.chunks_per_round * 2**20 * 64 > MAX_GRID_X
    with pytest.raises(ValueError, match="grid limit"):
        launch_grid(layout)


def test_every_launch_of_a_call_at_70000_batch_heads_fits():
    """The launches the autograd Function makes, built on meta tensors (no memory, no
    device): forward and backward, every round."""
    pytest.importorskip("triton")
    from reformer.lsh.triton.function import backward_launches, forward_buffers, forward_launches

    layout = _layout(70_000, 1, padded_len=128, n_hashes=2)
    shape = (layout.batch, layout.n_heads, layout.padded_len, 64)
    qk = torch.empty(shape, dtype=torch.bfloat16, device="meta")
    sort_idx = torch.empty((*shape[:2], layout.n_hashes, shape[2]), dtype=torch.long, device="meta")
    config = kernel_config(layout.bucket_size, 64, 64, torch.bfloat16)
    buffers = forward_buffers(qk, qk, sort_idx, None, layout)
    launches = forward_launches(*buffers, layout=layout, config=config, has_valid=False)
    stats = buffers[6]
    grads = torch.empty(shape, dtype=torch.float32, device="meta")
    launches += backward_launches(
        *buffers[:2],
        qk,
        *buffers[2:5],
        stats,
        stats,
        stats,
        grads,
        grads,
        grads,
        layout=layout,
        config=config,
        has_valid=False,
    )
    assert len(launches) == 3 * layout.n_hashes
    for _, grid, _, _ in launches:
        assert _fits(grid), grid
