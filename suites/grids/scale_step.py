"""The scale suite's runner: one training step of a long-context LM, measured once.

A scale point is a single step that may take half an hour (L = 2^20 on a 2-core CPU), so
the step whose memory is measured is also the step that is timed (``n_samples`` 1) and
no second step is run. The point may run the whole step under ``torch.autocast`` (the
``autocast`` field, e.g. "bfloat16", as the paper trained on TPUs in bfloat16; LSH logits
stay float32 inside the attention). The optimizer is AdamW with ``foreach=False``: the
multi-tensor path allocates temporaries for every parameter at once. The step is the one
every suite measures (suites.harness.steps), given these as hooks.

While it runs, the step writes what it is doing ("backward, layer 2/12") to the file named
by the option ``progress_file``, which the progress bar shows (suites.harness.progress).
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import TYPE_CHECKING, Any

import torch

from suites.harness.spec import Workload
from suites.harness.steps import Step, StepHooks, build_step

if TYPE_CHECKING:
    from reformer.config import ReformerConfig

AUTOCAST_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def build_scale_step(
    params: dict[str, Any],
    config: ReformerConfig,
    workload: Workload,
    progress_file: str | None = None,
) -> Step:
    """A whole-LM training step of ``config`` run as ``workload`` says (the point's row
    fields in ``params``), optionally under autocast (``params["autocast"]``): the common
    step (suites.harness.steps) with the forward under autocast, progress written per stage
    and layer, and AdamW's per-parameter path."""
    autocast = params.get("autocast")
    if autocast is not None and autocast not in AUTOCAST_DTYPES:
        raise ValueError(
            f"autocast={autocast!r} is unknown; allowed: None, {tuple(AUTOCAST_DTYPES)}"
        )
    if params["phase"] != "train_step" or not params["model"].startswith("reformer-"):
        raise ValueError(
            f"the scale runner measures reformer train_step points; got model="
            f"{params['model']!r}, phase={params['phase']!r}"
        )
    reporter = _Progress(progress_file)

    def forward_context() -> contextlib.AbstractContextManager[Any]:
        if autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(torch.device(workload.device).type, dtype=AUTOCAST_DTYPES[autocast])

    hooks = StepHooks(
        forward_context=forward_context,
        on_stage=reporter.stage,
        on_layer=reporter.layer if progress_file is not None else None,
        foreach=False,
    )
    step = build_step(params["model"], config, workload, hooks)
    step.info["autocast"] = autocast
    return step


class _Progress:
    """Writes "<stage>, layer i/N" to a file as the step's layers run (nothing if no file)."""

    def __init__(self, path: str | None) -> None:
        self.path, self.current = path, "start"

    def layer(self, index: int, n_layers: int) -> None:
        self._write(f"{self.current}, layer {index + 1}/{n_layers}")

    def stage(self, name: str) -> None:
        self.current = name
        self._write(name)

    def _write(self, text: str) -> None:
        if self.path is not None:
            with open(self.path, "w") as handle:
                handle.write(text)


def measure_scale_step(params: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """Runner: peak memory, bytes saved for backward, time and loss of one first step."""
    from suites.harness.measure import peak_memory
    from suites.harness.saved_bytes import saved_bytes

    if params.get("num_threads"):
        torch.set_num_threads(int(params["num_threads"]))
    torch.manual_seed(int(params.get("seed", 0)))
    step = build_scale_step(
        params, options["config"], options["workload"], options.get("progress_file")
    )
    outcome: dict[str, Any] = {}

    def once() -> None:
        step.zero_grad()
        start = time.perf_counter()
        saved, loss = saved_bytes(step.forward)
        value = float(loss.detach())
        step.finish(loss)
        outcome.update(seconds=time.perf_counter() - start, saved=saved, loss=value)

    memory, _ = peak_memory(once, params["device"])
    if not math.isfinite(outcome["loss"]):
        raise FloatingPointError(f"the step's loss is {outcome['loss']}")
    seconds = outcome["seconds"]
    return {
        "num_threads": torch.get_num_threads(),
        **step.info,
        **memory,
        "saved_mib": outcome["saved"] / 2**20,
        "flops": step.flops,
        "loss": outcome["loss"],
        "t_median_ms": seconds * 1e3,
        "t_iqr_ms": 0.0,
        "n_samples": 1,
        "tokens_per_s": step.tokens / seconds,
        "tflops_per_s": step.flops / seconds / 1e12 if step.flops else None,
    }
