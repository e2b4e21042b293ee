"""quality: the duplication task (paper Table 2) and a byte-level LM.

Points are (trained model, evaluation attention, step). The first point of each trained
model trains it (in its child process) and saves a checkpoint under
``<out>/quality/checkpoints/``; the others load it. See suites.quality for the tasks and
suites.quality.sizes for the sizes of each mode and why (``--paper`` on a CPU: the
duplication task alone, at the paper's shape, with the steps that fit a CPU).

- duplication: trained with shared-full, lsh-1, lsh-2, lsh-4 and local (the control:
  chunks in position order, no hash); each evaluated with shared-full, lsh-1, lsh-2,
  lsh-4, lsh-8 and local at the final step (the Table 2 matrix, with a local row and
  column).
- bytes: transformer-sdpa, reformer-lsh-rev trained with LSH-2 and with LSH-4, and
  reformer-lsh (reversible off) with LSH-4, all at equal parameter count, steps and tokens.
  Two ablations place any gap to the Transformer: reformer-lsh-rev trained with exact
  shared-QK attention ("shared-full": hashing removed) and reformer-sdpa-rev (the reversible
  stack with the Transformer's separate-QK SDPA: shared QK removed). The control for
  hashing: reformer-local-rev, the same model with local attention (equal parameters).
  Validation bits per byte at every ``eval_every`` steps with the training attention (the
  curves), and the shared-QK models at the final step with shared-full, lsh-1/2/4/8 and
  local.

``--seeds N`` (``ctx.seeds``) trains every model N times, with seeds 0..N-1 (the seed sets
the initialisation, the hash rotations and the data streams); rows carry ``seed``, and
seed 0's points are those of a one-seed run. ``--data PATH`` (a file or folder;
``ctx.data``) replaces the stdlib corpus for the byte
LM; checkpoints go under ``--out`` (``ctx.out_dir``).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from suites.harness.points import Point
from suites.harness.spec import Workload, model_fields
from suites.harness.suite import GridContext, Suite
from suites.quality.sizes import RunSize, mode_size
from suites.quality.tasks import Run, matched_d_ff
from suites.quality.train import Schedule
from suites.rows.names import DECODE_PREFIX, LOCAL, SHARED_FULL, hash_rounds, lsh_name
from suites.rows.store import DEFAULT_OUT

DUP_TRAIN = (SHARED_FULL, *map(lsh_name, (1, 2, 4)), LOCAL)
DUP_EVAL = (SHARED_FULL, *map(lsh_name, (1, 2, 4, 8)), LOCAL)
LM_EVAL = DUP_EVAL
# The byte LM scored by teacher-forced incremental decoding (reformer.decode) with each
# number of rounds, beside the full forward's LM_EVAL: what the decoding rule costs.
LM_DECODE = tuple(f"{DECODE_PREFIX}{lsh_name(n)}" for n in (1, 2, 4, 8))
RUNNER = "suites.quality.points:run_quality_point"
STDLIB = "python-stdlib"


def checkpoint_dir(ctx: GridContext) -> Path:
    # The CLI's own default folder when none is given (a plain run writes runs/).
    return (Path(ctx.out_dir or DEFAULT_OUT) / "quality" / "checkpoints").resolve()


def _schedule(size: RunSize) -> Schedule:
    return Schedule(
        steps=size.steps,
        batch=size.batch,
        seq_len=size.seq_len,
        lr=size.lr,
        warmup_steps=size.warmup_steps,
        eval_every=size.eval_every,
    )


def runs(ctx: GridContext) -> list[Run]:
    """Every model the suite trains, in the order they are trained: all of seed 0 first,
    then each further seed (``--seeds N``: seeds 0..N-1 of every model)."""
    first = _seed_zero_runs(ctx)
    return first + [
        replace(run, config=run.config.replace(seed=seed))
        for seed in range(1, ctx.seeds)
        for run in first
    ]


def _seed_zero_runs(ctx: GridContext) -> list[Run]:
    sizes = mode_size(ctx.mode, ctx.device)
    dup = sizes.duplication
    dup_config = dup.config
    found = [
        Run(
            task="duplication",
            family="reformer",
            train_attention=spec,
            config=dup_config.replace(
                n_hashes=hash_rounds(spec) or 1, attention="local" if spec == LOCAL else "lsh"
            ),
            schedule=_schedule(dup),
            eval_size=dup.eval_size,
            device=ctx.device,
        )
        for spec in DUP_TRAIN
    ]
    lm = sizes.bytes
    if lm is None:  # the mode trains the duplication task alone
        return found
    base = lm.config
    reformer = base.replace(attention="lsh", d_ff=matched_d_ff(base))
    data = ctx.data
    lm_runs = [
        ("transformer", "sdpa", base.replace(reversible=False)),
        ("reformer", "lsh-2", reformer.replace(n_hashes=2, reversible=True)),
        ("reformer", "lsh-4", reformer.replace(n_hashes=4, reversible=True)),
        ("reformer", "lsh-4", reformer.replace(n_hashes=4, reversible=False)),
        # Ablations that place the gap to the Transformer: the same shared-QK
        # model trained with exact attention (no hashing), and the Reformer's
        # reversible stack with the Transformer's separate-QK attention.
        ("reformer", SHARED_FULL, reformer.replace(n_hashes=1, reversible=True)),
        ("reformer", "sdpa", base.replace(reversible=True)),
        # The control for hashing: the shared-QK model with local attention (no hash).
        ("reformer", LOCAL, reformer.replace(attention="local", n_hashes=1, reversible=True)),
    ]
    found += [
        Run(
            task="bytes",
            family=family,
            train_attention=spec,
            config=config,
            schedule=_schedule(lm),
            eval_size=lm.eval_size,
            device=ctx.device,
            data=None if data is None else str(data),
        )
        for family, spec, config in lm_runs
    ]
    return found


def _params(run: Run, eval_spec: str, step: int) -> dict[str, Any]:
    """Row fields: the model as trained (its training cost is in the row too), the
    attention it is evaluated with, and the step."""
    workload = Workload(
        phase="train_step",
        seq_len=run.schedule.seq_len,
        batch=run.schedule.batch,
        device=run.device,
    )
    fields = model_fields(run.model_name, run.config, workload)
    # A shared-QK model trained with exact attention hashes nothing (nor does a local
    # one, which still chunks by bucket_size). The byte LMs have learned positions, and
    # these rows have never carried axial_shape in their identity.
    if run.train_attention == LOCAL:
        fields |= {"n_hashes": None}
    elif hash_rounds(run.train_attention) is None:
        fields |= {"n_hashes": None, "bucket_size": None}
    del fields["axial_shape"]
    return fields | {
        "task": run.task,
        "train_attention": run.train_attention,
        "eval_attention": eval_spec,
        "step": step,
        "steps": run.schedule.steps,
        "run_key": run.key(),
        "corpus": (run.data or STDLIB) if run.task == "bytes" else None,
    }


def grid(ctx: GridContext) -> list[Point]:
    timeout = mode_size(ctx.mode, ctx.device).timeout_s
    options = {"checkpoint_dir": str(checkpoint_dir(ctx))}
    points = []
    for run in runs(ctx):
        final = run.schedule.steps
        if run.task == "duplication":
            evaluations = [(spec, final) for spec in DUP_EVAL]
            # The training attention first: that point trains, the rest load its checkpoint.
            evaluations.sort(key=lambda item: item[0] != run.train_attention)
        else:
            evaluations = [(run.train_attention, step) for step in run.schedule.eval_steps()]
            if run.shared_qk:
                evaluations += [(spec, final) for spec in LM_EVAL if spec != run.train_attention]
            if run.shared_qk and run.train_attention != LOCAL:  # decoding hashes: LSH caches
                evaluations += [(spec, final) for spec in LM_DECODE]
        points += [
            Point(
                params=_params(run, spec, step),
                runner=RUNNER,
                timeout_s=timeout,
                options={**options, "run": run.to_dict()},
                # One run's points share its checkpoint: never two of them at once.
                serial=run.key(),
                work=_work(run, trains=index == 0),
            )
            for index, (spec, step) in enumerate(evaluations)
        ]
    return points


def _work(run: Run, *, trains: bool) -> float:
    """Tokens a point runs through, the cost by which side-by-side points are ordered
    (suites.harness.executors.side_by_side): a run's first point trains it (steps x batch
    x length), the others evaluate (the held-out set's tokens), so the runs that train
    longest start first and short evaluations fill the end."""
    schedule = run.schedule
    tokens = schedule.batch * schedule.seq_len
    return float(schedule.steps * tokens if trains else run.eval_size * schedule.seq_len)


def summarize(rows: list[dict[str, Any]], ctx: GridContext) -> list[str]:
    from suites.quality.summary import summary_lines

    return summary_lines(rows)


SUITE = Suite(
    name="quality",
    description="duplication task (Table 2) and byte-level LM",
    grid=grid,
    summarize=summarize,
    # Its figures are accuracies and bits per byte; the rows' step times say how they ran.
    side_by_side=True,
)
