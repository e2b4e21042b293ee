"""Point builders shared by the grids: a model from a preset, run by a harness.

A grid says what it varies and nothing else: ``config`` is a ``ReformerConfig`` from
``reformer.config.PRESETS`` changed with ``.replace(...)``, and the point's row fields
derive from it (suites.harness.spec.model_fields).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from reformer.config import PRESETS, ReformerConfig
from suites.harness.backend import backend_ablation
from suites.harness.points import Point
from suites.harness.spec import Workload, model_fields
from suites.harness.suite import GridContext
from suites.rows.names import layer_model, lm_model
from suites.rows.samples import MIN_SAMPLES

# (min_run_time s, timeout s) per mode: quick is a smoke run, paper is paper scale.
SIZING = {"quick": (0.01, 120.0), "default": (0.5, 600.0), "paper": (2.0, 3600.0)}
# The default model at smoke-test width. --quick grids run every preset at its width.
QUICK_MODEL = ReformerConfig(d_model=32, n_heads=2, d_ff=64, bucket_size=16)
QUICK = {name: getattr(QUICK_MODEL, name) for name in ("d_model", "n_heads", "d_ff", "bucket_size")}
# Seconds of timed calls per point in the default CUDA grids: steps take milliseconds
# there, and the grids must fit the GPU check script's few minutes (suites/tools/gpu_check.sh).
CUDA_MIN_RUN_TIME = 0.2
# What speed is measured in on a GPU: bfloat16, where SDPA runs its flash kernel.
CUDA_SPEED_DTYPE = "bfloat16"


def preset(ctx: GridContext, name: str = "default", **changes: Any) -> ReformerConfig:
    """A preset with ``changes``, at the quick width in --quick mode (changes win)."""
    quick = QUICK if ctx.mode == "quick" else {}
    return PRESETS[name].replace(**(quick | changes))


def powers_of_two(low: int, high: int) -> list[int]:
    """low, 2·low, ... up to high inclusive (both powers of two)."""
    lengths = []
    length = low
    while length <= high:
        lengths.append(length)
        length *= 2
    return lengths


def model_point(
    ctx: GridContext,
    model: str,
    config: ReformerConfig,
    *,
    seq_len: int,
    phase: str,
    batch: int = 1,
    dtype: str = "float32",
    min_run_time: float | None = None,
    min_samples: int = MIN_SAMPLES,
    timeout_s: float | None = None,
    options: dict[str, Any] | None = None,
) -> Point:
    """A point measuring ``config`` as ``model`` at one length (sizing from the mode).

    ``min_samples`` (default MIN_SAMPLES) is the least number of timed calls; a suite that
    measures memory and draws no time (memory, scale) asks for one."""
    default_run_time, default_timeout = SIZING[ctx.mode]
    # A smoke run of tiny models on one thread: two threads add only barrier waits at this
    # size, and on a busy machine those dominate.
    threads = 1 if ctx.mode == "quick" else None
    workload = Workload(
        phase=phase,
        seq_len=seq_len,
        batch=batch,
        dtype=dtype,
        device=ctx.device,
        num_threads=threads,
    )
    config = config.replace(max_seq_len=seq_len)
    return Point(
        params=model_fields(model, config, workload),
        config=config,
        workload=workload,
        options=dict(options or {}),
        min_run_time=default_run_time if min_run_time is None else min_run_time,
        min_samples=min_samples,
        timeout_s=default_timeout if timeout_s is None else timeout_s,
    )


def layer_point(
    ctx: GridContext,
    config: ReformerConfig,
    *,
    seq_len: int,
    batch: int = 1,
    model: str | None = None,
    phase: str = "fwd_bwd",
    **sizing: Any,
) -> Point:
    """One attention layer, x (B, L, d_model): ours (attn-<attention>) or a ``model`` peer."""
    return model_point(
        ctx,
        model or layer_model(config),
        config.replace(n_layers=1),
        seq_len=seq_len,
        batch=batch,
        phase=phase,
        **sizing,
    )


def lm_point(
    ctx: GridContext,
    family: str,
    config: ReformerConfig,
    *,
    seq_len: int,
    phase: str,
    batch: int = 1,
    **sizing: Any,
) -> Point:
    """A whole language model (``family`` "transformer" or "reformer") on tokens (B, L).

    The Transformer baseline has neither reversible residuals nor FF chunking."""
    if family == "transformer":
        config = config.replace(reversible=False, ff_chunks=1)
    return model_point(
        ctx,
        lm_model(family, config),
        config,
        seq_len=seq_len,
        phase=phase,
        batch=batch,
        **sizing,
    )


def ok_rows(rows: list[dict[str, Any]], **match: Any) -> list[dict[str, Any]]:
    return [
        r for r in rows if r.get("status") == "ok" and all(r.get(k) == v for k, v in match.items())
    ]


def knob_grid(
    ctx: GridContext,
    layer: ReformerConfig,
    knob: str,
    values: Sequence[Any],
    lengths: list[int],
    *,
    torch_path_only: bool = False,
) -> list[Point]:
    """One attention layer at each length x each value of one config field (``knob``) x
    each backend the device ablates (suites.harness.backend): the hashes and chunks suites.

    ``torch_path_only``: the knob acts on the torch path alone (``slice_elements``), so its
    points name ``backend="torch"`` on every device; the Triton kernels and the fused CPU
    kernel (what "auto" runs on a float32 CPU) would ignore it."""
    if torch_path_only:
        return [
            layer_point(ctx, layer.replace(**{knob: value}, backend="torch"), seq_len=length)
            for length in lengths
            for value in values
        ]
    return [
        layer_point(ctx, config, seq_len=length)
        for length in lengths
        for value in values
        for config in backend_ablation(layer.replace(**{knob: value}), ctx.device)
    ]


def distinct(points: Iterable[Point]) -> list[Point]:
    """The points in order, each one once (the first): two sweeps through one base config
    both reach its point (the chunks suite's bucket_size 64 at the default slice budget),
    and a grid that listed it twice would measure it twice."""
    seen: set[str] = set()
    kept = []
    for point in points:
        identity = json.dumps(point.params, sort_keys=True, default=str)
        if identity not in seen:
            seen.add(identity)
            kept.append(point)
    return kept
