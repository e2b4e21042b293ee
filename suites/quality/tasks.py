"""Training runs of the quality suite: what is trained, on what, and how it is evaluated.

A :class:`Run` is one trained model: task ("duplication" | "bytes"), family
("reformer" | "transformer"), the attention it is trained with, its config and schedule.
:func:`trained_model` trains it, or loads its checkpoint when one with the same identity
exists, so evaluating with other hash rounds needs no retraining. :func:`evaluate`
scores a trained model with any attention spec (suites.quality.attention).

Every shared-QK Reformer here is built with LSH layers, or local layers for the "local"
run (the same parameters); the spec it is trained with is passed to every training
forward as per-call arguments (suites.quality.attention), so "shared-full", "lsh-N" and
"local" models start from identical weights for a given seed. To evaluate with a spec of
the other layer kind, the trained weights are loaded into a model built with it
(:func:`load_trained`). The
byte-LM Transformer uses SDPA attention and its own separate Q, K and V; the Reformer's
feed-forward is widened to make up the d_model² parameters per layer that shared QK
saves, so both have (nearly) equal parameter counts.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from reformer.config import ReformerConfig
from suites.harness.spec import config_identity
from suites.quality.attention import attention_arguments, layer_attention, spec_arguments
from suites.quality.corpus import ByteCorpus, load_corpus, random_windows, validation_windows
from suites.quality.data import duplication_batch, second_half_mask
from suites.quality.metrics import (
    Tally,
    evaluate_bytes,
    evaluate_bytes_incremental,
    evaluate_duplication,
)
from suites.quality.train import (
    History,
    Schedule,
    load_checkpoint,
    preserved_generators,
    save_checkpoint,
    train,
)
from suites.rows.names import (
    LOCAL,
    SDPA,
    SHARED_FULL,
    decoded_attention,
    lm_model,
    parse_run_attention,
    schema_1_run_attention,
)

if TYPE_CHECKING:
    from baselines import TransformerLM
    from reformer.generate import CachedLM
    from reformer.model import ReformerLM

    LanguageModel = ReformerLM | TransformerLM

TASKS = ("duplication", "bytes")
FAMILIES = ("reformer", "transformer")
# Offsets that give the data streams their own seeds (never the global RNG).
_TRAIN_DATA_STREAM, _EVAL_DATA_STREAM, _EVAL_HASH_STREAM = 1, 2, 3


@dataclass(frozen=True, kw_only=True)
class Run:
    task: str
    family: str
    train_attention: str  # "shared-full" | "lsh-N" | "local" | "sdpa" (suites.rows.names)
    # What the model is built from (Reformer: attention="lsh", or "local" for local runs).
    config: ReformerConfig
    schedule: Schedule
    eval_size: int  # duplication: held-out sequences; bytes: validation windows
    device: str = "cpu"
    data: str | None = None  # bytes: --data path; None is the stdlib corpus

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task={self.task!r} is unknown; allowed: {TASKS}")
        if self.family not in FAMILIES:
            raise ValueError(f"family={self.family!r} is unknown; allowed: {FAMILIES}")
        kind, _ = parse_run_attention(self.train_attention)
        built_sdpa = self.family == "transformer" or self.config.attention == "sdpa"
        if (kind == SDPA) != built_sdpa:
            raise ValueError(
                f"train_attention={self.train_attention!r} does not fit family="
                f"{self.family!r} with config.attention={self.config.attention!r}"
                f": transformers and attention='sdpa' reformers train with "
                f"{SDPA!r}, shared-QK (attention='lsh') reformers with "
                f"{SHARED_FULL!r} or 'lsh-N'"
            )
        if (kind == LOCAL) != (self.config.attention == "local"):
            raise ValueError(
                f"train_attention={self.train_attention!r} does not fit config.attention="
                f"{self.config.attention!r}: a model trains with {LOCAL!r} exactly when it "
                "is built with attention='local'"
            )

    @property
    def shared_qk(self) -> bool:
        """A shared-QK Reformer: one set of weights runs 'shared-full', 'local' and every
        'lsh-N'."""
        return self.family == "reformer" and self.config.attention in ("lsh", "local")

    @property
    def seed(self) -> int:
        return self.config.seed

    @property
    def model_name(self) -> str:
        """Row label, as the other suites name LMs: transformer-sdpa, reformer-lsh[-rev].

        ``reformer-sdpa-rev`` is the Reformer's stack with separate-QK SDPA attention (the
        shared-QK ablation of paper Fig. 3)."""
        return lm_model(self.family, self.config)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "family": self.family,
            "train_attention": self.train_attention,
            "config": asdict(self.config),
            "schedule": asdict(self.schedule),
            "eval_size": self.eval_size,
            "device": self.device,
            "data": self.data,
        }

    @classmethod
    def from_dict(cls, spec: dict[str, Any]) -> Run:
        config = dict(spec["config"])
        for name in ("n_buckets", "axial_shape"):
            if isinstance(config.get(name), list):
                config[name] = tuple(config[name])
        return cls(
            task=spec["task"],
            family=spec["family"],
            train_attention=spec["train_attention"],
            config=ReformerConfig(**config),
            schedule=Schedule(**spec["schedule"]),
            eval_size=spec["eval_size"],
            device=spec.get("device", "cpu"),
            data=spec.get("data"),
        )

    def key(self) -> str:
        """Short hash of everything that decides the trained weights (device aside).

        The training attention is hashed as schema 1 spelled it (suites.rows.names), so runs
        trained before a rename keep their keys and checkpoints."""
        identity = {k: v for k, v in self.to_dict().items() if k != "device"}
        identity["config"] = config_identity(self.config)
        identity["train_attention"] = schema_1_run_attention(self.train_attention)
        text = json.dumps(identity, sort_keys=True, default=str)
        return hashlib.sha1(text.encode()).hexdigest()[:12]


def build_model(run: Run, attention: str | None = None) -> LanguageModel:
    """A freshly initialised model (init seeded by run.seed), as its config describes it,
    or with shared-QK layers of another kind (``attention`` "lsh" or "local": the same
    parameters).

    A shared-QK model runs its train spec through :func:`train_arguments`."""
    from baselines import TransformerLM
    from reformer.model import ReformerLM

    torch.manual_seed(run.seed)
    if run.family == "transformer":
        return TransformerLM(run.config).to(run.device)
    config = run.config if attention is None else run.config.replace(attention=attention)
    return ReformerLM(config).to(run.device)


def train_arguments(run: Run) -> dict[str, Any]:
    """The per-call arguments with which the model runs the attention it is trained with
    (none for a model whose attention cannot be switched)."""
    return spec_arguments(run.train_attention) if run.shared_qk else {}


def n_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def matched_d_ff(config: ReformerConfig) -> int:
    """The Reformer d_ff whose parameter count is closest to the Transformer's at config.d_ff.

    Parameters grow linearly in d_ff, so two counts (on the meta device: no memory) give
    the slope; counting follows whatever the models actually hold.
    """
    from baselines import TransformerLM
    from reformer.model import ReformerLM

    def reformer_params(d_ff: int) -> int:
        return n_parameters(ReformerLM(config.replace(attention="lsh", d_ff=d_ff)))

    with torch.device("meta"):
        target = n_parameters(TransformerLM(config.replace(attention="sdpa")))
        base = reformer_params(config.d_ff)
        slope = reformer_params(config.d_ff + 1) - base
    return config.d_ff + max(0, round((target - base) / slope))


class Task:
    """Data, loss and evaluation of one run (built in the child that trains or evaluates)."""

    def __init__(self, run: Run, corpus: ByteCorpus | None = None) -> None:
        self.run = run
        self.corpus = corpus
        self._train_arguments = train_arguments(run)
        seq_len, device = run.schedule.seq_len, run.device
        self._train_stream = torch.Generator().manual_seed(run.seed * 1009 + _TRAIN_DATA_STREAM)
        eval_stream = torch.Generator().manual_seed(run.seed * 1009 + _EVAL_DATA_STREAM)
        batch = run.schedule.batch
        if run.task == "duplication":
            self.eval_batches = [
                duplication_batch(min(batch, run.eval_size - start), seq_len, eval_stream).to(
                    device
                )
                for start in range(0, run.eval_size, batch)
            ]
            self._mask = second_half_mask(seq_len).to(device)
        else:
            if corpus is None:
                raise ValueError("the bytes task needs a corpus (suites.quality.corpus)")
            windows = validation_windows(corpus.validation, seq_len, run.eval_size).to(device)
            self.eval_batches = list(windows.split(batch))

    def batch(self, step: int) -> torch.Tensor:
        """Training tokens (B, L) for ``step``; drawn in order from the run's own stream."""
        size, seq_len = self.run.schedule.batch, self.run.schedule.seq_len
        if self.run.task == "duplication":
            tokens = duplication_batch(size, seq_len, self._train_stream)
        else:
            assert self.corpus is not None  # a bytes task always loads one
            tokens = random_windows(self.corpus.train, size, seq_len, self._train_stream)
        return tokens.to(self.run.device)

    def loss(self, model: LanguageModel, tokens: torch.Tensor) -> torch.Tensor:
        """Duplication: cross-entropy on the second copy of w only; bytes: on every byte.
        The model runs the run's training attention."""
        if self.run.task == "bytes":
            return model.loss(tokens, **self._train_arguments)
        logits = model(tokens, **self._train_arguments)[:, :-1]  # (B, L-1, V)
        targets = tokens[:, 1:]
        return F.cross_entropy(
            logits[:, self._mask].flatten(0, 1), targets[:, self._mask].flatten()
        )

    def evaluate(self, model: LanguageModel, spec: str) -> dict[str, float]:
        """Metrics of ``model`` run with attention ``spec`` on the fixed held-out set.

        ``"decode-lsh-N"`` scores the byte LM by teacher-forced incremental decoding
        with N rounds (reformer.decode's rule) instead of the full forward."""
        decoded = decoded_attention(spec)
        if decoded is not None:
            if self.run.task != "bytes" or not self.run.shared_qk:
                raise ValueError(
                    f"eval_attention={spec!r}: incremental decoding is evaluated on the byte "
                    "LM's shared-QK Reformers only"
                )
            spec = decoded
        if self.run.shared_qk:
            seed = self.run.seed * 1009 + _EVAL_HASH_STREAM
            arguments = attention_arguments(model, spec, seed=seed)
        elif spec != self.run.train_attention:
            raise ValueError(
                f"a {self.run.model_name} model evaluates only with "
                f"{self.run.train_attention!r}; got {spec!r}"
            )
        else:
            arguments = {}
        if self.run.task == "duplication":
            tally: Tally = evaluate_duplication(model, self.eval_batches, arguments)
            return {"accuracy": tally.accuracy, "loss": tally.loss}
        if decoded is None:
            tally = evaluate_bytes(model, self.eval_batches, arguments)
        else:  # both language models decode (reformer.generate.CachedLM)
            tally = evaluate_bytes_incremental(
                cast("CachedLM", model), self.eval_batches, arguments
            )
        return {"bits_per_byte": tally.bits_per_token, "loss": tally.loss}


def checkpoint_path(run: Run, checkpoint_dir: Path) -> Path:
    spelled = schema_1_run_attention(run.train_attention)
    name = f"{run.task}_{run.model_name}_{spelled}_{run.key()}.pt"
    return Path(checkpoint_dir) / name


def make_task(run: Run) -> Task:
    """The run's task, with its corpus loaded for the bytes task."""
    return Task(run, load_corpus(run.data) if run.task == "bytes" else None)


def ensure_trained(
    run: Run, checkpoint_dir: Path, *, progress: bool = True
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state_dict, meta) of the run's checkpoint; trains and saves it first if missing.

    meta holds the run, its training history (losses, step times, validation along the
    way), the parameter count, the corpus description and, added here, ``checkpoint``
    (its path) and ``trained_now``.
    """
    path = checkpoint_path(run, checkpoint_dir)
    if path.exists():
        state, meta = load_checkpoint(path)
        return state, meta | {"checkpoint": str(path), "trained_now": False}
    _claim_training(path)
    task = make_task(run)
    model = build_model(run)

    def evaluate(trained: LanguageModel) -> dict[str, float]:
        with preserved_generators(trained):
            return task.evaluate(trained, run.train_attention)

    desc = f"{run.task} {run.model_name} {run.train_attention}"
    history: History = train(
        model,
        run.schedule,
        batches=task.batch,
        loss_fn=task.loss,
        evaluate=evaluate,
        desc=desc,
        progress=progress,
    )
    corpus = task.corpus.describe() if task.corpus is not None else None
    meta = {
        "run": run.to_dict(),
        "run_key": run.key(),
        "history": history.to_dict(),
        "n_params": n_parameters(model),
        "num_threads": torch.get_num_threads(),
        "torch": str(torch.__version__),
        "corpus": corpus,
    }
    save_checkpoint(path, model, meta)
    _attempt_marker(path).unlink(missing_ok=True)
    return model.state_dict(), meta | {"checkpoint": str(path), "trained_now": True}


def _attempt_marker(path: Path) -> Path:
    return path.with_name(f".{path.name}.attempt")


def _claim_training(path: Path) -> None:
    """Refuse to train a run whose training already failed in this sweep.

    Points run one after another in children of one long-lived process (the harness's
    forkserver); a marker naming that parent is left while training. Finding it means
    an earlier point of this sweep died training this run (error, timeout, out of
    memory), and training again would only fail again, at length. A new sweep (another
    parent) retries.
    """
    marker = _attempt_marker(path)
    parent = str(os.getppid())
    if marker.exists() and marker.read_text().strip() == parent:
        raise RuntimeError(
            f"training {path.name} already failed earlier in this sweep (see "
            "that point's row); not retrying until the next run of the suite"
        )
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(parent)


def load_trained(
    run: Run, state: dict[str, torch.Tensor], spec: str | None = None
) -> LanguageModel:
    """The run's model with trained weights, in eval mode; with ``spec``, built with the
    layers that run it (LSH or local: suites.quality.attention.layer_attention)."""
    attention = None
    if spec is not None and run.shared_qk:
        attention = layer_attention(spec, run.config.attention)
    model = build_model(run, attention)
    model.load_state_dict(state)
    return model.eval()
