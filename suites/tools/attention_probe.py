"""Train one duplication-task model and probe what it attends to along training.

``python -m suites.tools.attention_probe --train lsh-1 [--mode default|paper] [--every N]
[--eval-size N] [--out results/probe]`` trains the quality suite's duplication model of
that mode (``--paper``'s CPU shape: L = 1024) with the training attention named, exactly as
the suite trains it (same data, seed, schedule: evaluation never changes what is trained),
and every ``--every`` steps measures it under full attention (with and without the self
mask), LSH-1, LSH-4 and local attention (suites.quality.probe): accuracy, attention
entropy, the weight on the true copy position, and the logit scale. One JSON line per
(step, evaluated attention) goes to ``<out>/probe_<mode>_<train>_<stamp>.jsonl`` with the
code's git sha and whether the tree was dirty; the quality report draws them. Nothing is
timed.

``--steps N`` trains for N steps instead of the suite's (the same warm-up, the learning
rate's cosine stretched over N): how the attention changes with longer training than the
suite's, which this CPU affords (the paper trains 150K steps).

``--from-checkpoints DIR`` trains nothing: it probes, at their final step, the duplication
models of the mode that a quality-suite run left in DIR (``<out>/quality/checkpoints``),
every training attention found there (``--train`` is then not needed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from reformer.model import ReformerLM
from suites.grids.quality import DUP_TRAIN, runs
from suites.harness.environment import cpu_model, git_state
from suites.harness.suite import GridContext
from suites.quality.probe import PROBE_ATTENTIONS, probe
from suites.quality.tasks import Run, Task, build_model, checkpoint_path, load_trained
from suites.quality.train import load_checkpoint, train
from suites.rows.store import utc_stamp

_EVAL_HASH_STREAM = 3  # as suites.quality.tasks: the evaluation's rotations
PROBE_SEED = 7  # the probed sequences' own stream, apart from the suite's held-out set


def probe_run(mode: str, train_attention: str, every: int) -> Run:
    """The quality suite's duplication run of ``mode`` (on CPU) trained with
    ``train_attention``, validated every ``every`` steps (which trains the same weights)."""
    for run in runs(GridContext(device="cpu", mode=mode)):
        if run.task == "duplication" and run.train_attention == train_attention:
            return replace(run, schedule=replace(run.schedule, eval_every=every))
    raise ValueError(f"--train {train_attention!r} is unknown; allowed: {DUP_TRAIN}")


def probe_batches(run: Run, size: int) -> list[torch.Tensor]:
    from suites.quality.data import duplication_batch

    stream = torch.Generator().manual_seed(run.seed * 1009 + PROBE_SEED)
    batch = run.schedule.batch
    return [
        duplication_batch(min(batch, size - start), run.schedule.seq_len, stream)
        for start in range(0, size, batch)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train", choices=DUP_TRAIN)
    parser.add_argument("--from-checkpoints", type=Path, default=None)
    parser.add_argument("--mode", default="default", choices=("quick", "default", "paper"))
    parser.add_argument("--every", type=int, default=None, help="probe every N steps")
    parser.add_argument("--eval-size", type=int, default=32, help="sequences probed")
    parser.add_argument("--steps", type=int, default=None, help="train this many steps")
    parser.add_argument("--out", type=Path, default=Path("runs/probe"))
    args = parser.parse_args(argv)
    every = args.every
    if (every is not None and every < 1) or args.eval_size < 1 or (args.steps or 1) < 1:
        parser.error("--every, --eval-size and --steps must be positive ints")
    if args.from_checkpoints is not None:
        return probe_checkpoints(args.from_checkpoints, args.mode, args.eval_size, args.out)
    if args.train is None:
        parser.error("give --train (a training attention) or --from-checkpoints DIR")
    run = probe_run(args.mode, args.train, every or 1)
    if args.steps is not None:
        run = replace(run, schedule=replace(run.schedule, steps=args.steps))
    if every is None:
        run = replace(
            run, schedule=replace(run.schedule, eval_every=max(1, run.schedule.steps // 8))
        )
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        parser.error(f"--out {args.out}: {exc}")
    stamp = utc_stamp()
    path = args.out / f"probe_{args.mode}_{args.train}_{stamp}.jsonl"
    common = _common(run, args.mode, args.eval_size, stamp) | {"source": "training"}
    task, model = Task(run), build_model(run)
    batches = probe_batches(run, args.eval_size)
    hash_seed = run.seed * 1009 + _EVAL_HASH_STREAM
    eval_steps = iter(run.schedule.eval_steps())  # train() evaluates after each, in order

    def evaluate(trained: Any) -> dict[str, float]:
        step = next(eval_steps)
        found = probe(trained, batches, PROBE_ATTENTIONS, hash_seed=hash_seed)
        with path.open("a", encoding="utf-8") as out:
            for spec, metrics in found.items():
                row = common | {"step": step, "eval_attention": spec, **metrics}
                out.write(json.dumps(row) + "\n")
        return {"acc": found[args.train if args.train in found else "shared-full"]["accuracy"]}

    train(
        model,
        run.schedule,
        batches=task.batch,
        loss_fn=task.loss,
        evaluate=evaluate,
        desc=f"probe {args.mode} {args.train}",
        progress=sys.stderr.isatty(),
    )
    print(f"wrote {path} (load {os.getloadavg()[0]:.1f})")
    return 0


def _common(run: Run, mode: str, eval_size: int, stamp: str) -> dict[str, Any]:
    """The fields every row of one probed model carries."""
    sha, dirty = git_state()
    return {
        "kind": "attention_probe",
        "timestamp_utc": stamp,
        "git_sha": sha,
        "git_dirty": dirty,
        "cpu_model": cpu_model(),
        "torch": torch.__version__,
        "num_threads": torch.get_num_threads(),
        "mode": mode,
        "train_attention": run.train_attention,
        "seq_len": run.schedule.seq_len,
        "bucket_size": run.config.bucket_size,
        "steps": run.schedule.steps,
        "batch": run.schedule.batch,
        "seed": run.seed,
        "run_key": run.key(),
        "eval_size": eval_size,
    }


def probe_checkpoints(folder: Path, mode: str, eval_size: int, out: Path) -> int:
    """Probe every duplication model of ``mode`` whose suite checkpoint is in ``folder``."""
    found = [
        run
        for run in runs(GridContext(device="cpu", mode=mode))
        if run.task == "duplication" and checkpoint_path(run, folder).exists()
    ]
    if not found:
        print(f"no duplication checkpoints of mode {mode!r} in {folder}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    stamp = utc_stamp()
    path = out / f"probe_{mode}_checkpoints_{stamp}.jsonl"
    for run in found:
        state, _ = load_checkpoint(checkpoint_path(run, folder))
        model = load_trained(run, state)
        assert isinstance(model, ReformerLM)  # duplication models are shared-QK Reformers
        hash_seed = run.seed * 1009 + _EVAL_HASH_STREAM
        metrics = probe(model, probe_batches(run, eval_size), PROBE_ATTENTIONS, hash_seed=hash_seed)
        common = _common(run, mode, eval_size, stamp) | {"source": "checkpoint"}
        with path.open("a", encoding="utf-8") as rows:
            for spec, values in metrics.items():
                row = common | {"step": run.schedule.steps, "eval_attention": spec, **values}
                rows.write(json.dumps(row) + "\n")
    print(f"wrote {path} ({len(found)} models; load {os.getloadavg()[0]:.1f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
