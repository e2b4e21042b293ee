"""The attention-probe CLI (suites.tools.attention_probe): from a suite checkpoint and from
its own training run."""

from __future__ import annotations


def test_the_tool_probes_a_suite_checkpoint_and_a_training_run(tmp_path):
    """Both ways of the CLI write one row per (step, attention) with the code's sha."""
    import json

    from suites.grids.quality import grid
    from suites.harness.suite import GridContext
    from suites.quality.points import run_quality_point
    from suites.quality.probe import PROBE_ATTENTIONS
    from suites.tools.attention_probe import main

    ctx = GridContext(device="cpu", mode="quick", out_dir=tmp_path)
    point = next(p for p in grid(ctx) if p.params["train_attention"] == "lsh-1")
    run_quality_point(point.params, {**point.options, "progress": False})
    folder = tmp_path / "quality" / "checkpoints"
    assert main(["--mode", "quick", "--from-checkpoints", str(folder), "--out", str(tmp_path)]) == 0
    assert main(["--mode", "quick", "--train", "local", "--out", str(tmp_path)]) == 0
    rows = [json.loads(line) for path in tmp_path.glob("probe_*.jsonl") for line in path.open()]
    trained = {(r["source"], r["train_attention"]) for r in rows}
    assert trained == {("checkpoint", "lsh-1"), ("training", "local")}
    assert {r["eval_attention"] for r in rows} == set(PROBE_ATTENTIONS)
    assert all(r["git_sha"] and 0.0 <= r["accuracy"] <= 1.0 for r in rows)
