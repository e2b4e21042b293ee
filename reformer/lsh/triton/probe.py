"""A one-off check that Triton can compile, launch and run a kernel on the current CUDA
device (``reformer.lsh.dispatch.triton_runnable`` calls it once per process)."""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _add_one(X, n, BLOCK: tl.constexpr):
    offsets = tl.arange(0, BLOCK)
    values = tl.load(X + offsets, mask=offsets < n, other=0.0)
    tl.store(X + offsets, values + 1.0, mask=offsets < n)


def probe_launch() -> None:
    """Launch a 16-element kernel on the current device and check its result; raises
    whatever Triton raises (no C compiler, no Python.h, a driver Triton cannot use)."""
    x = torch.arange(16, dtype=torch.float32, device="cuda")
    _add_one[(1,)](x, 16, BLOCK=16)
    expected = torch.arange(1, 17, dtype=torch.float32, device="cuda")
    if not torch.equal(x, expected):
        raise RuntimeError(f"the probe kernel computed {x.tolist()}, not {expected.tolist()}")
