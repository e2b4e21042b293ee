"""The quality suite's runner: one result row per (trained model, evaluation, step).

Called by the harness in a child process as ``run_quality_point(params, options)``
(suites.harness.measure). ``options["run"]`` describes the training run (suites.quality.tasks.Run)
and ``options["checkpoint_dir"]`` where its checkpoint lives. The first point of a run
trains the model and saves the checkpoint; every later point loads it. A point whose
``eval_attention`` is the training attention reads the validation metric recorded during
training at its ``step`` (the same held-out set and the same evaluation seed as a fresh
evaluation, so the numbers are identical); any other evaluation runs the final checkpoint
with the other attention.

Row fields written here, beside the harness's schema fields:

- task, train_attention, eval_attention, step, steps, accuracy (duplication, a fraction
  in [0, 1]), bits_per_byte (bytes), loss (nats per scored token);
- n_params, tokens_seen (step x batch x seq_len), lr, warmup_steps, eval_size, run_key,
  checkpoint (file name under <out>/quality/checkpoints), trained_now, shared_qk,
  train_wall_s;
- timing of the *training* steps: t_median_ms, t_iqr_ms, n_samples (steps timed),
  tokens_per_s, with ``phase`` = "train_step" (perf_counter around each optimiser step,
  not Timer.blocked_autorange: the steps are the training run itself);
- bytes task: corpus, corpus_root, corpus_split, corpus_fingerprint, corpus_*_files and
  corpus_*_bytes (suites.quality.corpus).
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import torch

from suites.quality.tasks import Run, ensure_trained, load_trained, make_task


def run_quality_point(params: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    run = Run.from_dict(options["run"])
    if params.get("num_threads"):
        torch.set_num_threads(int(params["num_threads"]))
    step, eval_spec = int(params["step"]), params["eval_attention"]
    if not 1 <= step <= run.schedule.steps:
        raise ValueError(f"step={step} must be in [1, steps={run.schedule.steps}]")
    state, meta = ensure_trained(
        run, Path(options["checkpoint_dir"]), progress=options.get("progress", True)
    )
    if eval_spec == run.train_attention:
        metrics = _recorded(meta, step)
    elif step == run.schedule.steps:
        task = make_task(run)
        _check_same_corpus(task, meta)
        metrics = task.evaluate(load_trained(run, state, eval_spec), eval_spec)
    else:
        raise ValueError(
            f"eval_attention={eval_spec!r} differs from train_attention="
            f"{run.train_attention!r}: only the final step (steps="
            f"{run.schedule.steps}) is evaluated with another attention"
        )
    history = meta["history"]
    return {
        **metrics,
        **_timing(history["step_ms"], run),
        **(meta.get("corpus") or {}),
        "task": run.task,
        "train_attention": run.train_attention,
        "eval_attention": eval_spec,
        "step": step,
        "steps": run.schedule.steps,
        "n_params": meta["n_params"],
        "tokens_seen": step * run.schedule.batch * run.schedule.seq_len,
        "lr": run.schedule.lr,
        "warmup_steps": run.schedule.warmup_steps,
        "eval_size": run.eval_size,
        "run_key": run.key(),
        "checkpoint": Path(meta["checkpoint"]).name,
        "trained_now": meta["trained_now"],
        "shared_qk": run.shared_qk,
        "train_wall_s": history["wall_s"],
        "num_threads": meta["num_threads"],
    }


def _recorded(meta: dict[str, Any], step: int) -> dict[str, float]:
    for record in meta["history"]["evals"]:
        if record["step"] == step:
            return {k: v for k, v in record.items() if k != "step"}
    steps = [record["step"] for record in meta["history"]["evals"]]
    raise ValueError(f"no validation was recorded at step {step}; recorded steps: {steps}")


def _check_same_corpus(task: Any, meta: dict[str, Any]) -> None:
    if task.corpus is None or meta.get("corpus") is None:
        return
    trained_on, now = meta["corpus"]["corpus_fingerprint"], task.corpus.fingerprint
    if trained_on != now:
        raise ValueError(
            f"checkpoint {meta['checkpoint']} was trained on corpus "
            f"{trained_on[:12]}, but the data now gives {now[:12]}; delete the "
            "checkpoint or use another --out to retrain"
        )


def _timing(step_ms: list[float], run: Run) -> dict[str, Any]:
    median = statistics.median(step_ms)
    quartiles = statistics.quantiles(step_ms, n=4) if len(step_ms) > 1 else [median] * 3
    return {
        "t_median_ms": median,
        "t_iqr_ms": quartiles[2] - quartiles[0],
        "n_samples": len(step_ms),
        "tokens_per_s": run.schedule.batch * run.schedule.seq_len / (median / 1e3),
    }
