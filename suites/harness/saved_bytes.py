"""Bytes saved for backward: a deterministic, machine-independent memory figure.

Counts every tensor autograd packs for backward, via
``torch.autograd.graph.saved_tensors_hooks``. A storage saved by several nodes (an output
saved by the next layer and by the op that made it, say) is counted once, because it is
held once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


def _storage_key(tensor: torch.Tensor) -> tuple[str, int]:
    storage = tensor.untyped_storage()
    return (str(tensor.device), storage.data_ptr())


def saved_bytes(fn: Callable[[], Any]) -> tuple[int, Any]:
    """Run ``fn()`` and return (bytes of unique storages saved for backward, fn's result).

    The result is returned so the caller can keep the graph alive or call backward on it.
    """
    storages: dict[tuple[str, int], int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        if tensor.device.type != "meta":
            storages.setdefault(_storage_key(tensor), tensor.untyped_storage().nbytes())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        result = fn()
    return sum(storages.values()), result
