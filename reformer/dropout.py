"""Dropout that a recomputation can replay: masks drawn from the module's own generators.

Reversible layers recompute each branch in backward; the recomputed dropout must draw the
very masks the forward drew, without touching the global RNG.
"""

from __future__ import annotations

import torch
from torch import nn


class ReplayableDropout(nn.Module):
    """Dropout whose masks come from the module's own generators, one per device.

    x (any shape) -> x · mask / (1 - p), mask ~ Bernoulli(1 - p) drawn by
    ``torch.rand(..., generator=g)``. Identity in eval mode or with p = 0 (no draw). The
    generator state can be read and restored (``get_state`` / ``set_state``) so a
    recomputation draws the same mask.
    """

    def __init__(self, p: float, seed: int) -> None:
        super().__init__()
        self.p = p
        self.seed = seed
        self._generators: dict[torch.device, torch.Generator] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        noise = torch.rand(
            x.shape, generator=self._generator(x.device), device=x.device, dtype=x.dtype
        )
        return x * (noise >= self.p) / (1.0 - self.p)

    def get_state(self) -> dict[torch.device, torch.Tensor]:
        return {device: gen.get_state() for device, gen in self._generators.items()}

    def set_state(self, state: dict[torch.device, torch.Tensor]) -> None:
        # A generator first created after the state was taken must start afresh on replay.
        for device in list(self._generators):
            if device not in state:
                del self._generators[device]
        for device, gen_state in state.items():
            self._generator(device).set_state(gen_state)

    def _generator(self, device: torch.device) -> torch.Generator:
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        if device not in self._generators:
            self._generators[device] = torch.Generator(device=device).manual_seed(self.seed)
        return self._generators[device]
