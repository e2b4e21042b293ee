"""The quality suite end to end: --quick through the harness writes the Table 2 matrix rows."""

import dataclasses

import pytest

from suites.grids.quality import DUP_EVAL, DUP_TRAIN, SUITE, grid, runs
from suites.harness.options import SweepOptions
from suites.harness.suite import GridContext
from suites.harness.sweep import run_sweep
from suites.quality.points import run_quality_point
from suites.quality.summary import duplication_matrix, summary_lines
from suites.rows.schema import ROW_FIELDS


@pytest.fixture
def text_folder(tmp_path):
    root = tmp_path / "text"
    root.mkdir()
    for i in range(5):
        (root / f"{i}.txt").write_bytes(f"def f{i}(x):\n    return x * {i}\n".encode() * 20)
    return root


def test_quick_duplication_matrix_end_to_end(tmp_path):
    ctx = GridContext(device="cpu", mode="quick", out_dir=tmp_path)
    duplication = dataclasses.replace(
        SUITE, grid=lambda c: [p for p in grid(c) if p.params["task"] == "duplication"]
    )
    run_file = run_sweep(duplication, ctx, SweepOptions(out_dir=tmp_path, progress=False))
    rows = run_file.rows
    assert len(rows) == len(DUP_TRAIN) * len(DUP_EVAL)
    assert all(row["status"] == "ok" for row in rows), [r["error"] for r in rows]
    assert all(field in row for row in rows for field in ROW_FIELDS)
    assert sum(row["trained_now"] for row in rows) == len(DUP_TRAIN)  # one training per model
    matrix = duplication_matrix(rows)
    assert set(matrix) == {(t, e) for t in DUP_TRAIN for e in DUP_EVAL}
    assert all(0.0 <= value <= 100.0 for value in matrix.values())
    assert any("trained lsh-4, evaluated lsh-8" in line for line in summary_lines(rows))
    assert (tmp_path / "quality" / "checkpoints").is_dir()
    resumed = run_sweep(duplication, ctx, SweepOptions(out_dir=tmp_path, progress=False))
    assert len(resumed.rows) == len(rows)  # every point was ok: nothing measured again


def test_bytes_points_curve_and_other_hash_rounds(text_folder, tmp_path):
    ctx = GridContext(device="cpu", mode="quick", data=str(text_folder), out_dir=tmp_path)
    points = [p for p in grid(ctx) if p.params["task"] == "bytes"]
    reformer = [
        p
        for p in points
        if p.params["model"] == "reformer-lsh-rev" and p.params["train_attention"] == "lsh-2"
    ]
    assert {p.params["eval_attention"] for p in reformer} == {
        "shared-full",
        "lsh-1",
        "lsh-2",
        "lsh-4",
        "lsh-8",
        "local",
        "decode-lsh-1",
        "decode-lsh-2",
        "decode-lsh-4",
        "decode-lsh-8",
    }
    rows = [run_quality_point(p.params, {**p.options, "progress": False}) for p in reformer]
    assert [row["trained_now"] for row in rows] == [True] + [False] * (len(rows) - 1)
    assert all(0.0 < row["bits_per_byte"] < 9.0 for row in rows)
    assert rows[0]["corpus"] == str(text_folder) and rows[0]["corpus_validation_files"] == 1
    params = reformer[0].params
    assert rows[0]["tokens_seen"] == params["step"] * params["batch"] * params["seq_len"]


def test_equal_parameters_steps_and_tokens_across_byte_models():
    lm = [run for run in runs(GridContext(device="cpu", mode="default")) if run.task == "bytes"]
    assert {run.model_name for run in lm} == {
        "transformer-sdpa",
        "reformer-lsh-rev",
        "reformer-lsh",
        "reformer-sdpa-rev",
        "reformer-local-rev",
    }
    assert {(run.model_name, run.train_attention) for run in lm if not run.shared_qk} == {
        ("transformer-sdpa", "sdpa"),
        ("reformer-sdpa-rev", "sdpa"),
    }
    assert len({(run.schedule.steps, run.schedule.batch, run.schedule.seq_len) for run in lm}) == 1
    local = next(run for run in lm if run.train_attention == "local")
    lsh = next(run for run in lm if run.model_name == "reformer-lsh-rev")
    assert local.config == lsh.config.replace(attention="local", n_hashes=1)


def test_the_local_runs_decode_nothing_and_chunk_as_lsh_does():
    points = grid(GridContext(device="cpu", mode="default"))
    local = [p.params for p in points if p.params["train_attention"] == "local"]
    assert {p["task"] for p in local} == {"duplication", "bytes"}
    assert not any(p["eval_attention"].startswith("decode-") for p in local)
    assert all(p["n_hashes"] is None and p["bucket_size"] is not None for p in local)


def test_paper_mode_on_a_cpu_is_the_papers_duplication_shape_alone():
    found = runs(GridContext(device="cpu", mode="paper"))
    assert {run.task for run in found} == {"duplication"}
    assert {run.train_attention for run in found} == set(DUP_TRAIN)
    for run in found:
        config = run.config
        assert (config.d_model, config.n_heads, config.n_layers, config.vocab_size) == (
            256,
            4,
            1,
            128,
        )
        assert run.schedule.seq_len == 1024 and config.bucket_size == 64
        assert run.schedule.seq_len * 2 // config.bucket_size == 32  # the paper's buckets
    assert {run.task for run in runs(GridContext(device="cuda", mode="paper"))} == {
        "duplication",
        "bytes",
    }


def test_data_with_a_grid_that_trains_no_byte_lm_is_refused(text_folder, tmp_path, capsys):
    from suites.run import main

    with pytest.raises(SystemExit) as exc:
        main(["quality", "--paper", "--device", "cpu", "--data", str(text_folder)])
    assert exc.value.code == 2 and "--data" in capsys.readouterr().err


def test_default_duplication_keeps_several_buckets_per_sequence():
    for run in runs(GridContext(device="cpu", mode="default")):
        if run.task == "duplication":
            assert run.schedule.seq_len // run.config.bucket_size >= 4
            assert (run.config.d_model, run.config.n_heads, run.config.n_layers) == (256, 4, 1)


def test_run_cli_data_flag_errors_name_the_flag(tmp_path, capsys):
    from suites.run import main

    with pytest.raises(SystemExit) as exc:
        main(["quality", "--data", str(tmp_path / "missing"), "--out", str(tmp_path)])
    assert exc.value.code == 2 and "--data" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["memory", "--data", str(tmp_path), "--out", str(tmp_path)])
    assert exc.value.code == 2
    assert "only to the quality suite" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.jsonl"))  # nothing ran


def test_run_cli_data_flag_reaches_the_byte_lm_points(text_folder, tmp_path, capsys):
    from suites.run import main

    assert main(["quality", "--quick", "--list", "--data", str(text_folder)]) == 0
    listed = capsys.readouterr().out
    assert str(text_folder) in listed and "python-stdlib" not in listed


def test_seeds_train_every_model_again_and_keep_seed_zero_points():
    one = grid(GridContext(device="cpu", mode="quick"))
    three = grid(GridContext(device="cpu", mode="quick", seeds=3))
    assert len(three) == 3 * len(one)
    assert [p.params for p in three[: len(one)]] == [p.params for p in one]
    assert {p.params["seed"] for p in three} == {0, 1, 2}
    assert len({p.key("quality", "cpu-x") for p in three}) == len(three)
    assert len({p.options["run"]["config"]["seed"] for p in three}) == 3


def test_summary_gives_mean_and_spread_over_seeds():
    rows = [
        {
            "status": "ok",
            "task": "duplication",
            "step": 2,
            "steps": 2,
            "seq_len": 16,
            "seed": seed,
            "train_attention": "lsh-4",
            "eval_attention": "lsh-4",
            "accuracy": accuracy,
        }
        for seed, accuracy in ((0, 0.76), (1, 0.999), (2, 0.99))
    ]
    assert duplication_matrix(rows)[("lsh-4", "lsh-4")] == pytest.approx(91.6333, abs=1e-3)
    text = "\n".join(summary_lines(rows))
    assert "mean ± standard deviation over 3 seeds" in text
    assert "| lsh-4 | - [0.8] | - [100] | 91.6 ± 13.5 [99.9] |" in text
    assert "1 seed" in "\n".join(summary_lines(rows[:1]))
