"""The main job's grid (python -m suites.run memory) and its end-of-run lines."""

from __future__ import annotations

from suites.grids.memory import SUITE, budget_gb, summarize
from suites.harness.suite import GridContext

DEFAULT = GridContext(device="cpu", mode="default")


def test_default_grid_crosses_depth_with_length():
    points = SUITE.grid(DEFAULT)
    params = [p.params for p in points]
    assert {p["n_layers"] for p in params} == {2, 6}
    assert {p["phase"] for p in params} == {"train_step"}
    assert {p["model"] for p in params} == {
        "transformer-full",
        "transformer-sdpa",
        "reformer-lsh",
        "reformer-lsh-rev",
        "reformer-local-rev",
    }
    assert sorted({p["seq_len"] for p in params}) == [1024, 2048, 4096, 8192, 16384]
    assert len(points) == 5 * 2 * 5 and budget_gb(DEFAULT) == 4.0


def test_quick_grid_is_tiny_and_single_threaded():
    points = SUITE.grid(GridContext(device="cpu", mode="quick"))
    assert len(points) <= 20
    assert {p.workload.num_threads for p in points} == {1}
    assert max(p.seq_len for p in points) <= 256 and max(p.config.d_model for p in points) <= 32


def _row(model, n_layers, seq_len, status="ok", peak=None):
    return {
        "model": model,
        "phase": "train_step",
        "n_layers": n_layers,
        "seq_len": seq_len,
        "status": status,
        "peak_mib": peak,
        "impl": None if status != "ok" else "x",
    }


def test_summary_answers_where_each_runs_out_and_how_peaks_grow_with_depth():
    rows = []
    for n_layers in (2, 6):
        for length in (1024, 2048, 4096):
            rows.append(_row("reformer-lsh-rev", n_layers, length, peak=length / 10))
            rows.append(_row("reformer-lsh", n_layers, length, peak=length / 10 * n_layers))
        rows.append(_row("transformer-full", n_layers, 1024, peak=500.0))
        rows.append(_row("transformer-full", n_layers, 2048, status="oom"))
        rows.append(_row("transformer-full", n_layers, 4096, status="skipped"))
    lines = summarize(rows, DEFAULT)
    text = "\n".join(lines)
    assert "nan" not in text.lower() and "None" not in text
    assert "| transformer-full | train_step | 6 | 1024 | 500 | oom at L=2048 |" in lines
    assert "| reformer-lsh-rev | train_step | 4096 | 410 | 410 | 1.00 |" in lines
    assert "| reformer-lsh | train_step | 4096 | 819 | 2458 | 3.00 |" in lines
    assert len(lines) < 20  # the answer, not the table: that is in the results file
    # models come in the grid's order, not alphabetically
    first = [line.split("|")[1].strip() for line in lines[2:8]]
    assert first[0] == "transformer-full" and first[-1] == "reformer-lsh-rev"
