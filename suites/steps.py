"""The callable a sweep point measures: model construction plus one fwd / fwd_bwd / train_step.

Runs inside the point's child process; models are imported there, through the public API
(``reformer``, ``baselines``), so the harness works before or without them.

Models (the row's ``model`` field):

- whole language models, tokens (B, L) -> loss: ``transformer-full``, ``transformer-sdpa``
  (``baselines.TransformerLM``) and ``reformer-<lsh|full|sdpa>[-rev]``
  (``reformer.ReformerLM``; attention and reversibility come from the point's fields);
- one attention layer, x (B, L, d_model) -> (B, L, d_model): ``attn-lsh`` (ours,
  ``LSHSelfAttention``), ``attn-full`` and ``attn-sdpa`` (``reformer.attention``'s
  materialised and fused exact attention, separate Q/K/V projections);
- peers, x (B, L, d_model) -> (B, L, d_model): ``peer-reformer-pytorch``, ``peer-hf``
  (``baselines.peers``).

Passes: ``fwd`` is inference (``torch.no_grad``: nothing saved for backward); ``fwd_bwd``
adds the backward of the LM loss, or of ``out · g`` for a fixed random g (B, L, d_model) for
a single layer, input gradients included; ``train_step`` adds an AdamW update (LMs only).
Every call first sets all gradients to None, so no call accumulates into the last.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from reformer import ReformerConfig

PASSES = ("fwd", "fwd_bwd", "train_step")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
LM_PREFIXES = ("transformer-", "reformer-")
ATTENTION_MODELS = ("attn-lsh", "attn-full", "attn-sdpa")
PEER_MODELS = ("peer-reformer-pytorch", "peer-hf")
# ReformerConfig fields a point may set; everything else in params is harness metadata.
CONFIG_FIELDS = ("vocab_size", "d_model", "n_heads", "n_layers", "d_ff", "attention",
                 "n_hashes", "bucket_size", "n_buckets", "dup_correction", "causal",
                 "reversible", "ff_chunks", "axial_shape", "seed")


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


def model_config(params: dict[str, Any]) -> ReformerConfig:
    """The ReformerConfig a point describes; max_seq_len is the point's seq_len."""
    from reformer import ReformerConfig

    fields = {name: params[name] for name in CONFIG_FIELDS if params.get(name) is not None}
    if isinstance(fields.get("axial_shape"), list):
        fields["axial_shape"] = tuple(fields["axial_shape"])
    if isinstance(fields.get("n_buckets"), list):
        fields["n_buckets"] = tuple(fields["n_buckets"])
    return ReformerConfig(max_seq_len=int(params["seq_len"]), **fields)


def lm_name(family: str, attention: str, reversible: bool) -> str:
    """Row label of a whole LM: transformer-<attention>, reformer-<attention>[-rev]."""
    if family == "transformer":
        return f"transformer-{attention}"
    return f"reformer-{attention}" + ("-rev" if reversible else "")


def build_step(params: dict[str, Any]) -> Step:
    """Model, inputs and the step function for one point (untimed)."""
    pass_name, model = params["pass"], params["model"]
    if pass_name not in PASSES:
        raise ValueError(f"pass={pass_name!r} is unknown; allowed: {PASSES}")
    if params.get("dtype", "float32") not in DTYPES:
        raise ValueError(f"dtype={params.get('dtype')!r} is unknown; allowed: {tuple(DTYPES)}")
    if model.startswith(LM_PREFIXES):
        return _lm_step(params)
    if model in ATTENTION_MODELS or model in PEER_MODELS:
        if pass_name == "train_step":
            raise ValueError(f"model={model!r} is a single attention layer; allowed passes: "
                             "('fwd', 'fwd_bwd')")
        return _layer_step(params)
    raise ValueError(f"model={model!r} is unknown; allowed: transformer-full, "
                     f"transformer-sdpa, reformer-<attention>[-rev], {ATTENTION_MODELS}, "
                     f"{PEER_MODELS}")


def _lm_step(params: dict[str, Any]) -> Step:
    from reformer.flops import model_flops

    config = model_config(params)
    expected = lm_name(params["model"].split("-")[0], config.attention, config.reversible)
    if params["model"] != expected:
        raise ValueError(f"model={params['model']!r} disagrees with attention="
                         f"{config.attention!r}, reversible={config.reversible}: "
                         f"expected {expected!r}")
    device, dtype = torch.device(params["device"]), DTYPES[params.get("dtype", "float32")]
    if params["model"].startswith("transformer-"):
        from baselines import TransformerLM

        net = TransformerLM(config)
        info = {"impl": "baselines.TransformerLM", "impl_version": own_version()}
    else:
        from reformer import ReformerLM

        net = ReformerLM(config)
        info = {"impl": "reformer.ReformerLM", "impl_version": own_version()}
    net = net.to(device=device, dtype=dtype).train()
    batch, seq_len = int(params["batch"]), int(params["seq_len"])
    generator = torch.Generator().manual_seed(int(params.get("seed", 0)))
    tokens = torch.randint(config.vocab_size, (batch, seq_len), generator=generator).to(device)
    pass_name = params["pass"]
    parameters = list(net.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=1e-4) if pass_name == "train_step" else None

    def forward() -> Any:
        if pass_name == "fwd":
            with torch.no_grad():
                return net(tokens)
        return net.loss(tokens)

    def finish(loss: Any) -> None:
        if pass_name == "fwd":
            return
        loss.backward()
        if optimizer is not None:
            optimizer.step()

    flops = model_flops(config, seq_len, batch, backward=pass_name != "fwd")
    info |= {"flops_method": "analytic", "n_buckets": _lsh_buckets(config, seq_len)}
    return Step(forward, finish, parameters, batch * seq_len, flops, info)


def _layer_step(params: dict[str, Any]) -> Step:
    model = params["model"]
    config = model_config(params)
    if model in ATTENTION_MODELS:
        config = config.replace(attention=model.removeprefix("attn-"))
    device, dtype = torch.device(params["device"]), DTYPES[params.get("dtype", "float32")]
    batch, seq_len = int(params["batch"]), int(params["seq_len"])
    if model in PEER_MODELS:
        from baselines.peers import build_peer

        layer, info = build_peer(model, config, seq_len)
    else:
        from reformer.attention import build_attention

        layer = build_attention(config)
        info = {"impl": f"reformer.{type(layer).__name__}", "impl_version": own_version(),
                "n_buckets": _lsh_buckets(config, seq_len)}
    layer = layer.to(device=device, dtype=dtype).train()
    generator = torch.Generator().manual_seed(int(params.get("seed", 0)))
    shape = (batch, seq_len, config.d_model)
    x = torch.randn(shape, generator=generator).to(device=device, dtype=dtype)
    grad_out = torch.randn(shape, generator=generator).to(device=device, dtype=dtype)
    pass_name = params["pass"]
    x.requires_grad_(pass_name != "fwd")

    def forward() -> Any:
        if pass_name == "fwd":
            with torch.no_grad():
                return layer(x)
        return layer(x)

    def finish(out: Any) -> None:
        if pass_name != "fwd":
            out.backward(grad_out)

    info["flops_method"] = "flop_counter"
    return Step(forward, finish, [*layer.parameters(), x], batch * seq_len, None, info)


def own_version() -> str | None:
    """This project's version (the row's git_sha pins the code exactly)."""
    try:
        return importlib.metadata.version("reformer-bench")
    except importlib.metadata.PackageNotFoundError:
        return None


def _lsh_buckets(config: ReformerConfig, seq_len: int) -> int | None:
    """Total buckets our LSH hashes into at this length (2·L/bucket_size by default)."""
    if config.attention != "lsh":
        return None
    from reformer.hashing import resolve_n_buckets, total_buckets

    return total_buckets(resolve_n_buckets(config.n_buckets, seq_len, config.bucket_size))
