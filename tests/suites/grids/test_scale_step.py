"""The scale suite's step is the common step builder's, with hooks: the forward under
autocast, progress per stage and layer, one model built."""

from __future__ import annotations

import torch

from reformer.config import PRESETS
from suites.grids.scale_step import build_scale_step
from suites.harness.spec import Workload, model_fields
from suites.harness.steps import StepHooks, build_step
from suites.rows.names import lm_model


def _point(autocast: str | None = None):
    config = PRESETS["debug"].replace(reversible=True, max_seq_len=64)
    workload = Workload(phase="train_step", seq_len=64, batch=1)
    params = model_fields(lm_model("reformer", config), config, workload) | {"autocast": autocast}
    return params, config, workload


def test_progress_names_each_stage_and_layer(tmp_path):
    params, config, workload = _point()
    progress = tmp_path / "progress"
    step = build_scale_step(params, config, workload, str(progress))
    loss = step.forward()
    assert progress.read_text() == f"forward, layer {config.n_layers}/{config.n_layers}"
    step.finish(loss)
    assert progress.read_text() == "done"
    assert step.info["autocast"] is None and step.info["impl"] == "reformer.ReformerLM"


def test_hooks_see_stages_layers_and_wrap_the_forward():
    params, config, workload = _point()
    events: list[str] = []
    entered: list[bool] = []

    class Context:
        def __enter__(self):
            entered.append(True)

        def __exit__(self, *exc):
            return False

    hooks = StepHooks(
        forward_context=Context,
        on_stage=events.append,
        on_layer=lambda index, n: events.append(f"layer {index + 1}/{n}"),
    )
    step = build_step(params["model"], config, workload, hooks)
    step()
    n = config.n_layers
    assert entered == [True]
    assert events[0] == "forward" and events[-2:] == ["optimizer", "done"]
    assert [e for e in events[: events.index("backward")] if e.startswith("layer")] == [
        f"layer {i + 1}/{n}" for i in range(n)
    ]


def test_autocast_runs_the_forward_in_bfloat16():
    params, config, workload = _point("bfloat16")
    step = build_scale_step(params, config, workload)
    loss = step.forward()
    assert step.info["autocast"] == "bfloat16" and torch.isfinite(loss)
    step.finish(loss)
