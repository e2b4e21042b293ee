"""A small deterministic training loop with a progress bar, and checkpoints.

Deterministic for a given seed: the caller seeds the model's initialisation and draws
batches from its own seeded generator; LSH layers draw rotations from their own
generators (seeded from config.seed); evaluation during training saves and restores those
generators, so how often one evaluates does not change what is trained. Dropout is 0 in
every quality run. On CPU the same seed and thread count give bit-identical weights.

Optimiser: Adam (beta2 0.98, as trax's Reformer configs use), gradient norm clipped at 1,
learning rate warmed up linearly then decayed by a half cosine to a tenth of its peak,
so a short run ends on a small step size.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn


@dataclass(frozen=True, kw_only=True)
class Schedule:
    steps: int
    batch: int
    seq_len: int
    lr: float
    warmup_steps: int
    eval_every: int  # validation every this many steps, and after the last one
    grad_clip: float = 1.0
    final_lr_fraction: float = 0.1

    def __post_init__(self) -> None:
        for name in ("steps", "batch", "seq_len", "eval_every"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)!r} must be a positive int")
        if self.lr <= 0 or self.warmup_steps < 0:
            raise ValueError(f"lr={self.lr} must be > 0 and warmup_steps={self.warmup_steps} >= 0")

    def learning_rate(self, step: int) -> float:
        """Rate for optimiser step ``step`` (0-based)."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        span = max(1, self.steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        floor = self.final_lr_fraction
        return self.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))

    def eval_steps(self) -> list[int]:
        """Steps (number of updates done) after which validation runs."""
        return sorted({*range(self.eval_every, self.steps + 1, self.eval_every), self.steps})


@dataclass
class History:
    """What a training run did: losses per step, step times, validation along the way."""

    losses: list[float] = field(default_factory=list)
    step_ms: list[float] = field(default_factory=list)
    evals: list[dict[str, float]] = field(default_factory=list)  # {"step": s, metric: v}
    wall_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# The model type train() is given is the one its loss and evaluation take.
Model = TypeVar("Model", bound=nn.Module)


def train(
    model: Model,
    schedule: Schedule,
    *,
    batches: Callable[[int], torch.Tensor],
    loss_fn: Callable[[Model, torch.Tensor], torch.Tensor],
    evaluate: Callable[[Model], dict[str, float]] | None = None,
    desc: str = "train",
    progress: bool = True,
) -> History:
    """Train ``model`` for ``schedule.steps`` Adam steps on ``batches(step)`` (B, L) tokens.

    ``evaluate(model)`` runs after each of ``schedule.eval_steps()``; its metrics are kept in
    ``history.evals`` with the step. The bar shows the smoothed loss and the last eval.
    """
    from tqdm import tqdm

    optimizer = torch.optim.Adam(model.parameters(), lr=schedule.lr, betas=(0.9, 0.98), eps=1e-9)
    history = History()
    eval_at = set(schedule.eval_steps()) if evaluate is not None else set()
    smoothed = None
    start = time.perf_counter()
    bar = tqdm(
        range(schedule.steps),
        desc=desc,
        unit="step",
        disable=not progress,
        file=sys.stderr,
        dynamic_ncols=True,
        mininterval=1.0,
    )
    model.train()
    for step in bar:
        tokens = batches(step)
        tick = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = schedule.learning_rate(step)
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model, tokens)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), schedule.grad_clip)
        optimizer.step()
        value = loss.item()
        history.step_ms.append((time.perf_counter() - tick) * 1e3)
        history.losses.append(value)
        if not math.isfinite(value):
            raise FloatingPointError(f"{desc}: training loss became {value} at step {step}")
        smoothed = value if smoothed is None else 0.9 * smoothed + 0.1 * value
        postfix = {"loss": f"{smoothed:.3f}"}
        if evaluate is not None and step + 1 in eval_at:
            with preserved_generators(model), torch.no_grad():
                model.eval()
                metrics = evaluate(model)
                model.train()
            history.evals.append({"step": step + 1, **metrics})
            postfix |= {k: f"{v:.3f}" for k, v in metrics.items()}
        bar.set_postfix(postfix, refresh=False)
    bar.close()
    model.eval()
    history.wall_s = time.perf_counter() - start
    return history


@contextlib.contextmanager
def preserved_generators(model: nn.Module) -> Iterator[None]:
    """Restore every module's own ``generator`` (LSH rotations) to its state on entry."""
    generators = [getattr(module, "generator", None) for module in model.modules()]
    saved = [(g, g.get_state()) for g in generators if isinstance(g, torch.Generator)]
    try:
        yield
    finally:
        for generator, state in saved:
            generator.set_state(state)


def save_checkpoint(path: Path, model: nn.Module, meta: dict[str, Any]) -> None:
    """Weights (moved to CPU) and JSON-like metadata; written to a temp file, then renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()}
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save({"state_dict": state, "meta": meta}, partial)
    partial.replace(path)


def load_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state_dict, meta) of a checkpoint written by :func:`save_checkpoint`."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    return payload["state_dict"], payload["meta"]
