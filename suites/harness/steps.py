"""The callable a sweep point measures: model construction plus one fwd / fwd_bwd / train_step.

Runs inside the point's child process; models are imported there, through the public API
(``reformer``, ``baselines``), so the harness works before or without them.

Models (the row's ``model`` field, named in suites.rows.names), each built from the point's
``ReformerConfig`` as it stands (the name only picks the class):

- whole language models, tokens (B, L) -> loss: ``baselines.TransformerLM`` and
  ``reformer.ReformerLM``;
- one attention layer, x (B, L, d_model) -> (B, L, d_model): ``reformer.attention``'s
  layer for ``config.attention`` (LSH with shared QK; materialised or fused exact attention
  with separate Q/K/V projections);
- peers, x (B, L, d_model) -> (B, L, d_model): ``baselines.peers``;
- peers' whole language models, tokens (B, L) -> loss: ``baselines.peer_models``.

Passes: ``fwd`` is inference (``torch.no_grad``: nothing saved for backward); ``fwd_bwd``
adds the backward of the LM loss, or of ``out · g`` for a fixed random g (B, L, d_model) for
a single layer, input gradients included; ``train_step`` adds an AdamW update (LMs only).
Every call first sets all gradients to None, so no call accumulates into the last.

A runner that needs more than the plain step (the scale suite: the forward under autocast,
progress per stage and layer) passes :class:`StepHooks` instead of building its own step,
as TorchBench's ``BenchmarkModel`` attaches contexts to the stages of one step.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from suites.harness.backend import backend_used
from suites.harness.dtypes import TORCH_DTYPES
from suites.rows.names import model_kind

if TYPE_CHECKING:
    from reformer import ReformerConfig
    from suites.harness.spec import Workload


@dataclass
class Step:
    """One measured call, split so the harness can count what the forward saves.

    ``forward()`` builds the graph and returns what ``finish`` needs; ``finish`` runs the
    backward (and optimizer); ``__call__`` is one whole step with gradients reset first.
    """

    forward: Callable[[], Any]
    finish: Callable[[Any], None]
    grad_tensors: list[torch.Tensor]  # parameters and inputs whose .grad is reset per call
    tokens: int  # B · L
    flops: int | None = None  # analytic, when the model has a formula; else counted
    info: dict[str, Any] = field(default_factory=dict)  # extra row fields (impl, n_buckets)

    def zero_grad(self) -> None:
        for tensor in self.grad_tensors:
            tensor.grad = None

    def __call__(self) -> None:
        self.zero_grad()
        self.finish(self.forward())


def _no_stage(stage: str) -> None:
    """The default stage hook: nothing to report."""


@dataclass(frozen=True)
class StepHooks:
    """Seams in a whole-LM step, for runners that watch or wrap its stages.

    ``forward_context`` wraps the forward (e.g. ``torch.autocast``); ``on_stage`` is told
    each stage as it starts ("forward", "backward", "optimizer") and "done" at the end;
    ``on_layer(index, n_layers)`` runs before each layer's attention module is called;
    ``foreach`` is AdamW's (None: torch's default; False keeps the optimizer from
    allocating temporaries for every parameter at once).
    """

    forward_context: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext
    on_stage: Callable[[str], None] = _no_stage
    on_layer: Callable[[int, int], None] | None = None
    foreach: bool | None = None


def build_step(
    model: str, config: ReformerConfig, workload: Workload, hooks: StepHooks | None = None
) -> Step:
    """Model, inputs and the step function for one point (untimed). ``hooks`` apply to
    whole LMs only."""
    kind = model_kind(model)
    if kind in ("transformer", "reformer"):
        return _lm_step(kind, config, workload, hooks or StepHooks())
    if kind == "peer-lm":
        return _lm_step(model, config, workload, hooks or StepHooks())
    if hooks is not None:
        raise ValueError(f"model={model!r} is a single attention layer; step hooks need an LM")
    if workload.phase == "train_step":
        raise ValueError(
            f"model={model!r} is a single attention layer; allowed phases: ('fwd', 'fwd_bwd')"
        )
    return _layer_step(model if kind == "peer" else None, config, workload)


def _lm_step(family: str, config: ReformerConfig, workload: Workload, hooks: StepHooks) -> Step:
    """A whole-LM step: ``family`` is "transformer", "reformer" or a peer LM's model name."""
    from baselines import TransformerLM
    from reformer import ReformerLM
    from reformer.flops import model_flops

    device, dtype = torch.device(workload.device), TORCH_DTYPES[workload.dtype]
    net: torch.nn.Module
    layers: list[torch.nn.Module] = []
    if family == "transformer":
        net = TransformerLM(config)
        info: dict[str, Any] = {"impl": "baselines.TransformerLM", "impl_version": own_version()}
        layers = list(net.layers)
    elif family == "reformer":
        net = ReformerLM(config)
        info = {"impl": "reformer.ReformerLM", "impl_version": own_version()}
        layers = [block.attention for block in net.blocks]
    else:  # a peer's whole LM: its own code, so no analytic FLOPs and no layer hooks
        from baselines.peer_models import build_peer_lm

        net, info = build_peer_lm(family, config, workload.seq_len)
    net = net.to(device=device, dtype=dtype).train()
    if hooks.on_layer is not None:
        for index, layer in enumerate(layers):
            layer.register_forward_pre_hook(
                lambda *_, i=index, watch=hooks.on_layer: watch(i, len(layers))
            )
    batch, seq_len = workload.batch, workload.seq_len
    generator = torch.Generator().manual_seed(config.seed)
    tokens = torch.randint(config.vocab_size, (batch, seq_len), generator=generator).to(device)
    phase = workload.phase
    parameters: list[torch.Tensor] = list(net.parameters())
    optimizer = (
        torch.optim.AdamW(parameters, lr=1e-4, foreach=hooks.foreach)
        if phase == "train_step"
        else None
    )

    loss_of: Callable[[torch.Tensor], torch.Tensor] = net.loss  # type: ignore[assignment]

    def forward() -> Any:
        hooks.on_stage("forward")
        with hooks.forward_context():
            if phase == "fwd":
                with torch.no_grad():
                    return net(tokens)
            return loss_of(tokens)

    def finish(loss: Any) -> None:
        if phase != "fwd":
            hooks.on_stage("backward")
            loss.backward()
        if optimizer is not None:
            hooks.on_stage("optimizer")
            optimizer.step()
        hooks.on_stage("done")

    flops = model_flops(config, seq_len, batch, backward=phase != "fwd")
    if family not in ("transformer", "reformer"):
        # A peer LM's reversible internals break torch's FLOP counter (its module tracker
        # needs a grad_fn where their custom Functions run without one), so its FLOPs are
        # the model FLOPs of our LM at the same shapes: MFU as "useful work per second".
        info |= {"flops_method": "analytic_same_shapes"}
        return Step(forward, finish, parameters, batch * seq_len, flops, info)
    info |= {
        "flops_method": "analytic",
        "n_buckets": _lsh_buckets(config, seq_len),
        "backend": backend_used(config, workload.device, dtype),
    }
    return Step(forward, finish, parameters, batch * seq_len, flops, info)


def _layer_step(peer: str | None, config: ReformerConfig, workload: Workload) -> Step:
    device, dtype = torch.device(workload.device), TORCH_DTYPES[workload.dtype]
    batch, seq_len = workload.batch, workload.seq_len
    if peer is not None:
        from baselines.peers import build_peer

        layer, info = build_peer(peer, config, seq_len)
    else:
        from reformer.attention import build_attention

        layer = build_attention(config)
        info = {
            "impl": f"reformer.{type(layer).__name__}",
            "impl_version": own_version(),
            "n_buckets": _lsh_buckets(config, seq_len),
            "flops_method": "analytic",
            "backend": backend_used(config, workload.device, dtype),
        }
    layer = layer.to(device=device, dtype=dtype).train()
    generator = torch.Generator().manual_seed(config.seed)
    shape = (batch, seq_len, config.d_model)
    x = torch.randn(shape, generator=generator).to(device=device, dtype=dtype)
    grad_out = torch.randn(shape, generator=generator).to(device=device, dtype=dtype)
    phase = workload.phase
    x.requires_grad_(phase != "fwd")

    def forward() -> Any:
        if phase == "fwd":
            with torch.no_grad():
                return layer(x)
        return layer(x)

    def finish(out: Any) -> None:
        if phase != "fwd":
            out.backward(grad_out)

    flops = (
        None if peer is not None else layer_flops(config, seq_len, batch, backward=phase != "fwd")
    )
    info.setdefault("flops_method", "flop_counter")
    return Step(forward, finish, [*layer.parameters(), x], batch * seq_len, flops, info)


def layer_flops(config: ReformerConfig, seq_len: int, batch: int, backward: bool) -> int:
    """Model FLOPs of one of our attention layers (reformer.flops: projections, attention
    core and hashing of one layer; no recompute), whatever backend runs it.

    Counted FLOPs (torch.utils.flop_counter) cannot see inside a fused kernel (Triton, and
    SDPA only by formula) and count the torch path's recomputed scores, so backends would
    be credited with different work for one computation; MFU needs the same model FLOPs
    for every implementation."""
    from reformer.flops import flops_breakdown

    parts = flops_breakdown(config.replace(n_layers=1), seq_len, batch, backward=backward)
    return parts["projections"] + parts["attention"] + parts["hashing"]


def own_version() -> str | None:
    """This project's version (the row's git_sha pins the code exactly)."""
    try:
        return importlib.metadata.version("reformer-bench")
    except importlib.metadata.PackageNotFoundError:
        return None


def _lsh_buckets(config: ReformerConfig, seq_len: int) -> int | None:
    """Total buckets our LSH hashes into at this length (2·L/bucket_size by default); None
    for every other attention (local attention too: it hashes nothing)."""
    if config.attention != "lsh":
        return None
    from reformer.lsh.hashing import resolve_n_buckets, total_buckets

    return total_buckets(resolve_n_buckets(config.n_buckets, seq_len, config.bucket_size))
