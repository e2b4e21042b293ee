"""What a recomputation in backward needs to replay its forward faithfully.

Chunked feed-forward and reversible layers rerun part of the forward inside backward.
The rerun must compute in the precision the forward used (:class:`AutocastState`), and
module hooks that watch inputs must see a non-leaf tensor, as in the forward
(:func:`non_leaf_view`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def non_leaf_view(tensor: torch.Tensor) -> torch.Tensor:
    """A free view of a leaf that requires grad, so the tensor handed to modules is not a
    leaf: module hooks that watch inputs (torch's ModuleTracker, used by FlopCounterMode)
    fail on leaves inside ``torch.autograd.grad``."""
    return tensor.view_as(tensor) if tensor.requires_grad else tensor


@dataclass(frozen=True)
class AutocastState:
    """Autocast as it was during a forward, so a recomputation in backward (which runs
    outside the caller's ``torch.autocast`` block) computes in the same precision."""

    device_type: str
    enabled: bool
    dtype: torch.dtype

    @classmethod
    def current(cls, device_type: str) -> AutocastState:
        return cls(
            device_type,
            torch.is_autocast_enabled(device_type),
            torch.get_autocast_dtype(device_type),
        )

    def restore(self) -> torch.autocast:
        return torch.autocast(self.device_type, dtype=self.dtype, enabled=self.enabled)
