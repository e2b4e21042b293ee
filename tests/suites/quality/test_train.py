"""Training is deterministic per seed; checkpoints are reused; recorded evals are exact."""

import os

import pytest
import torch

from baselines import TransformerLM
from reformer import ReformerConfig
from reformer.model import ReformerLM
from suites.quality.tasks import (
    Run,
    build_model,
    checkpoint_path,
    ensure_trained,
    load_trained,
    make_task,
    matched_d_ff,
    n_parameters,
)
from suites.quality.train import Schedule, train

SEQ_LEN = 16


def _run(seed=0, eval_every=3, train_attention="lsh-2", task="duplication", data=None):
    config = ReformerConfig(
        vocab_size=128 if task == "duplication" else 256,
        d_model=32,
        n_heads=2,
        n_layers=1,
        d_ff=32,
        n_hashes=2,
        bucket_size=4,
        reversible=task == "bytes",
        max_seq_len=SEQ_LEN,
        seed=seed,
    )
    schedule = Schedule(
        steps=6, batch=4, seq_len=SEQ_LEN, lr=3e-3, warmup_steps=2, eval_every=eval_every
    )
    return Run(
        task=task,
        family="reformer",
        train_attention=train_attention,
        config=config,
        schedule=schedule,
        eval_size=8,
        data=data,
    )


def _train(run):
    model, task = build_model(run), make_task(run)
    history = train(
        model,
        run.schedule,
        batches=task.batch,
        loss_fn=task.loss,
        evaluate=lambda m: task.evaluate(m, run.train_attention),
        progress=False,
    )
    return model, history


def test_same_seed_trains_bit_identical_weights():
    (first, h1), (second, h2) = _train(_run()), _train(_run())
    assert h1.losses == h2.losses
    assert all(torch.equal(v, second.state_dict()[k]) for k, v in first.state_dict().items())
    other, _ = _train(_run(seed=1))
    assert not torch.equal(first.head.weight, other.head.weight)


def test_evaluating_during_training_does_not_change_training():
    (often, _), (rarely, _) = _train(_run(eval_every=1)), _train(_run(eval_every=6))
    assert all(torch.equal(v, rarely.state_dict()[k]) for k, v in often.state_dict().items())


def test_training_reduces_the_loss():
    _, history = _train(_run())
    assert history.losses[-1] < history.losses[0]


def test_checkpoint_is_reused_and_recorded_eval_equals_a_fresh_one(tmp_path):
    run = _run()
    state, meta = ensure_trained(run, tmp_path, progress=False)
    assert meta["trained_now"] and checkpoint_path(run, tmp_path).exists()
    again_state, again = ensure_trained(run, tmp_path, progress=False)
    assert not again["trained_now"]
    assert all(torch.equal(v, again_state[k]) for k, v in state.items())
    recorded = again["history"]["evals"][-1]
    assert recorded["step"] == run.schedule.steps
    fresh = make_task(run).evaluate(load_trained(run, again_state), run.train_attention)
    assert fresh == {k: v for k, v in recorded.items() if k != "step"}


def test_bytes_run_on_a_small_folder(tmp_path):
    data = tmp_path / "text"
    data.mkdir()
    for i in range(4):
        (data / f"{i}.txt").write_bytes(b"the quick brown fox jumps over the lazy dog. " * 8)
    run = _run(task="bytes", data=str(data))
    _, meta = ensure_trained(run, tmp_path / "ckpt", progress=False)
    assert meta["corpus"]["corpus_validation_files"] == 1
    bits = [record["bits_per_byte"] for record in meta["history"]["evals"]]
    assert len(bits) == 2 and all(0 < b < 9 for b in bits)


def test_a_failed_training_is_not_retried_in_the_same_sweep(tmp_path):
    run = _run()
    marker = checkpoint_path(run, tmp_path).with_name(
        f".{checkpoint_path(run, tmp_path).name}.attempt"
    )
    marker.write_text(str(os.getppid()))
    with pytest.raises(RuntimeError, match="already failed"):
        ensure_trained(run, tmp_path, progress=False)
    marker.write_text("another sweep")
    assert ensure_trained(run, tmp_path, progress=False)[1]["trained_now"]


def test_full_and_lsh_runs_start_from_the_same_weights():
    full, lsh = build_model(_run(train_attention="shared-full")), build_model(_run())
    assert all(torch.equal(v, lsh.state_dict()[k]) for k, v in full.state_dict().items())


def test_matched_d_ff_equalises_parameter_counts():
    config = ReformerConfig(
        vocab_size=256, d_model=64, n_heads=4, n_layers=3, d_ff=256, max_seq_len=64
    )
    transformer = n_parameters(TransformerLM(config.replace(attention="sdpa")))
    plain = n_parameters(ReformerLM(config))
    matched = n_parameters(ReformerLM(config.replace(d_ff=matched_d_ff(config))))
    assert abs(matched - transformer) < abs(plain - transformer) / 20
    assert abs(matched - transformer) / transformer < 1e-3


def test_run_rejects_a_mismatched_family():
    with pytest.raises(ValueError, match="train_attention"):
        _run(train_attention="sdpa")


def test_separate_qk_reformer_trains_and_evaluates_only_with_sdpa():
    shared = _run(train_attention="lsh-2")
    run = Run(
        task="duplication",
        family="reformer",
        train_attention="sdpa",
        config=shared.config.replace(attention="sdpa"),
        schedule=shared.schedule,
        eval_size=8,
    )
    assert run.model_name == "reformer-sdpa" and not run.shared_qk and shared.shared_qk
    model, history = _train(run)
    assert len(history.evals) == 2
    with pytest.raises(ValueError, match="evaluates only with 'sdpa'"):
        make_task(run).evaluate(model, "lsh-2")
    with pytest.raises(ValueError, match="train_attention"):
        Run(
            task="duplication",
            family="reformer",
            train_attention="lsh-2",
            config=run.config,
            schedule=run.schedule,
            eval_size=8,
        )


def test_byte_lm_models_have_equal_parameter_counts():
    from suites.grids.quality import runs
    from suites.harness.suite import GridContext

    counts = {
        (run.model_name, run.train_attention): n_parameters(build_model(run))
        for run in runs(GridContext(device="cpu"))
        if run.task == "bytes"
    }
    transformer = counts[("transformer-sdpa", "sdpa")]
    assert len(counts) == 7
    assert all(abs(n - transformer) / transformer < 1e-3 for n in counts.values()), counts
