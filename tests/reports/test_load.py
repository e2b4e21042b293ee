"""Report building blocks: loading, de-duplication, palette, tables, quality and peer maths."""

import json
import logging

import pandas as pd
import pytest

from reports.load import latest_points, load_history, load_rows, normalise, slugify
from reports.render.document import Note, Table, fmt
from reports.render.html import render_html
from reports.render.palette import FIXED, Palette
from reports.render.plotting import split_variants
from reports.sections.ablations import at_default_slice_budget
from reports.sections.ci_history import tidy_history
from reports.sections.front_matter import counts_table
from reports.sections.measured import paper_form
from reports.sections.peers import peer_ratios
from reports.sections.quality import duplication_matrices, expectation_table
from reports.sections.scale import longest_fits
from reports.sections.timing import crossover_rows, series_labels, uncrossed_rows
from suites.rows.names import hardware_name
from tests.reports.synthetic import (
    history_rows,
    memory_rows,
    peer_scale_rows,
    quality_rows,
    time_rows,
)


def test_load_skips_malformed_lines_and_rows_without_identity(tmp_path, caplog):
    nested = tmp_path / "ci"
    nested.mkdir()
    good = memory_rows()[0]
    lines = [json.dumps(good), "{torn", "[1, 2]", json.dumps({**good, "suite": None})]
    (nested / "run.jsonl").write_text("\n".join(lines) + "\n")
    (nested / "history.jsonl").write_text(json.dumps(history_rows()[0]) + "\n")
    with caplog.at_level(logging.WARNING, logger="reports"):
        rows = load_rows(tmp_path)
    assert len(rows) == 1  # read recursively; the history file is not a result file
    assert rows.loc[0, "source"] == "ci/run.jsonl"
    messages = " ".join(caplog.messages)
    assert "run.jsonl:2: malformed line skipped" in messages
    assert "run.jsonl:3: malformed line skipped (not a JSON object)" in messages
    assert "without suite" in messages
    assert len(load_history(tmp_path)) == 1


def test_newest_row_of_a_point_wins():
    first = {**memory_rows()[0], "status": "oom", "timestamp_utc": "2024-05-01T00:00:00Z"}
    later = {**first, "status": "ok", "timestamp_utc": "2024-05-02T00:00:00Z"}
    other = {**first, "seq_len": 999}
    rows = latest_points(normalise(pd.DataFrame([later, first, other])))
    assert sorted(zip(rows["seq_len"], rows["status"], strict=True)) == [(512, "ok"), (999, "oom")]
    # the harness's point_key decides identity where rows carry one
    keyed = [dict(first, point_key="k"), dict(later, point_key="k", seq_len=1)]
    assert len(latest_points(normalise(pd.DataFrame(keyed)))) == 1


def test_hardware_names():
    assert hardware_name({"device": "cuda", "gpu_name": "NVIDIA H200", "cpu_model": "x"}) == (
        "NVIDIA H200"
    )
    assert hardware_name({"device": "cpu", "gpu_name": "NVIDIA H200", "cpu_model": "Xeon"}) == (
        "Xeon"
    )
    assert slugify("Intel(R) Xeon(R) CPU @ 2.20GHz") == "intel-xeon-cpu-2-20ghz"


def test_palette_is_fixed_for_known_models_and_distinct_for_others():
    one = Palette(["reformer-lsh", "zeta", "alpha"])
    two = Palette(["alpha", "reformer-lsh"])
    assert one.colours["reformer-lsh"] == two.colours["reformer-lsh"] == FIXED["reformer-lsh"]
    assert one.colours["alpha"] == two.colours["alpha"]  # sorted union: alpha comes first
    one.ensure([f"extra-{i}" for i in range(20)])
    unknown = [c for label, c in one.colours.items() if label not in FIXED]
    assert len(set(unknown[:16])) == 16
    assert one.hue_order(["zeta", "transformer-full", "reformer-lsh"]) == [
        "transformer-full",
        "reformer-lsh",
        "zeta",
    ]


def test_counts_and_paper_form_spell_out_failures():
    rows = latest_points(normalise(pd.DataFrame(memory_rows())))
    counts = counts_table(rows, raw_rows=len(rows) + 3).frame
    assert counts.loc["memory"].to_dict() == {
        "points": "80",
        "ok": "74",
        "oom": "2",
        "timeout": "0",
        "error": "1",
        "skipped": "3",
        "under load": "0",
    }
    table = paper_form(rows, "peak_mib").set_index(["model", "n_layers", "phase"])
    assert list(table.columns) == ["512", "1024", "2048", "4096", "8192"]
    # failed rows lack num_threads, yet sit on their model's line
    assert table.loc[("transformer-full", "2", "train_step"), "4096"] == "OOM"
    assert table.loc[("transformer-full", "2", "train_step"), "8192"] == "skipped"
    assert table.loc[("transformer-full", "6", "train_step"), "2048"] == "OOM"
    assert table.loc[("reformer-lsh", "2", "fwd"), "8192"] == "error"


def test_split_variants_names_only_colliding_fields():
    rows = normalise(pd.DataFrame(memory_rows()[:3]))
    assert set(split_variants(rows, ["model", "phase", "seq_len"])) == {""}
    wide = rows.assign(d_model=[64, 128, 64], seq_len=[512, 512, 1024])
    assert list(split_variants(wide, ["model", "phase", "seq_len"])) == [
        "d_model=64",
        "d_model=128",
        "d_model=64",
    ]


def test_time_series_and_crossovers():
    rows = normalise(pd.DataFrame(time_rows()))
    rows = rows[rows["status"] == "ok"].assign(series=series_labels(rows))
    assert {"LSH-1", "LSH-8", "transformer-full", "transformer-sdpa"} <= set(rows["series"])
    found = {(c["LSH series"], c["against"]): c for c in crossover_rows(rows, "p")}
    # LSH-1 costs 12 ms flat; full costs 2 + 0.01 L: equal at L = 1000 (interpolated ~998)
    assert 512 < found[("LSH-1", "transformer-full")]["crossover L"] < 1024
    assert found[("LSH-1", "transformer-full")]["cheaper above"] == "LSH-1"
    assert ("LSH-8", "transformer-full") not in found  # 96 ms: full stays cheaper to 8K
    never = {(c["LSH series"], c["against"]): c for c in uncrossed_rows(rows, "p")}
    assert never[("LSH-8", "transformer-full")]["cheaper above"] == "transformer-full throughout"
    assert never[("LSH-8", "transformer-full")]["crossover L"] is None
    assert not set(never) & set(found)


def test_duplication_matrix_and_expectations():
    rows = normalise(pd.DataFrame(quality_rows()))
    (matrix,) = duplication_matrices(rows).values()
    assert list(matrix.index) == ["Full", "LSH-4", "LSH-2", "LSH-1"]
    assert list(matrix.columns) == ["Full", "LSH-8", "LSH-4", "LSH-2", "LSH-1"]
    # fractions shown as percent, the mean of three seeds (99.4, 95.4, 97.4)
    assert matrix.loc["LSH-4", "LSH-2"] == pytest.approx(97.4)
    (spread,) = duplication_matrices(rows, "std").values()
    assert spread.loc["LSH-4", "LSH-2"] == pytest.approx(2.0)
    (seeds,) = duplication_matrices(rows, "seeds").values()
    assert (seeds == 3).all().all()
    missed = matrix.copy()
    missed.loc["LSH-4", "LSH-4"] = 90.0
    missed.loc["Full", "Full"] = 99.5
    checks = expectation_table(missed).set_index(["trained", "evaluated"])
    assert checks.loc[("LSH-4", "LSH-4"), "met"] == "NO"
    assert checks.loc[("LSH-4", "LSH-4"), "measured"] == "90"
    assert checks.loc[("Full", "Full"), "met"] == "yes"


def test_peer_ratios_and_longest_fit():
    rows = normalise(pd.DataFrame(peer_scale_rows()))
    ratios = peer_ratios(rows[rows["suite"] == "peers"])
    # Our own rows record impl_version too: only peer- models are peers, attn-lsh is ours.
    assert set(ratios["ours"]) == {"attn-lsh"}
    peer = ratios[ratios["model"] == "peer-reformer-pytorch"]
    assert list(peer["seq_len"]) == [1024, 2048]  # the timed-out peer point has no ratio
    assert set(peer["time_ratio"]) == {1.5} and set(peer["memory_ratio"]) == {2.0}
    sdpa = ratios[ratios["model"] == "attn-sdpa"]
    assert list(sdpa["seq_len"]) == [1024, 2048, 4096] and set(sdpa["memory_ratio"]) == {0.25}
    fits = longest_fits(rows[rows["suite"] == "scale"]).set_index("model")
    assert fits.loc["reformer-lsh-rev", "longest L"] == 65536
    assert fits.loc["transformer-full", "stopped at"] == "16384 (oom)"


def test_history_needs_a_name_and_a_value():
    history = tidy_history(pd.DataFrame(history_rows()))
    assert len(history) == 9
    assert list(history.loc[history["figure"] == "saved_bytes_slope_lsh", "status"]) == [
        "pass",
        "pass",
        "fail",
    ]
    assert tidy_history(pd.DataFrame([{"value": 1.0}])).empty


def test_html_escapes_and_formats():
    page = render_html("a <b>", [Note("use `x < y`"), Table(pd.DataFrame({"v": ["<i>"]}), "cap")])
    assert "<title>a &lt;b&gt;</title>" in page
    assert "<code>x &lt; y</code>" in page
    assert "&lt;i&gt;" in page
    assert [fmt(v) for v in (None, float("nan"), 2.0, 1234.5678, 0.012345, "OOM")] == [
        "",
        "",
        "2",
        "1235",
        "0.0123",
        "OOM",
    ]


def test_peer_ratios_from_the_committed_peers_rows():
    """The committed rows of a real peers run (ours record impl_version 0.1.0) join."""
    from reports.load import load_rows
    from suites.harness.env import REPO_ROOT

    rows = load_rows(REPO_ROOT / "results")
    peers = rows[rows["source"] == "peers_cpu_20261129T045430Z.jsonl"]
    ratios = peer_ratios(peers)
    assert set(ratios["ours"]) == {"attn-lsh"}
    for model in ("peer-reformer-pytorch", "peer-hf", "attn-sdpa"):
        assert sorted(ratios.loc[ratios["model"] == model, "seq_len"]) == [1024, 4096, 16384]
    at_16k = ratios[(ratios["seq_len"] == 16384)].set_index("model")
    assert at_16k.loc["peer-hf", "memory_ratio"] > 2  # HF keeps every round's chunk scores


def test_the_chunks_figure_draws_the_bucket_sweep_alone():
    # Slice-sweep rows record slice_elements and share bucket_size 64 with the bucket
    # sweep's point at the default budget, which records none.
    rows = normalise(
        pd.DataFrame(
            [
                {"suite": "chunks", "model": "attn-lsh", "status": "ok", "bucket_size": 32},
                {"suite": "chunks", "model": "attn-lsh", "status": "ok", "bucket_size": 64},
                {
                    "suite": "chunks",
                    "model": "attn-lsh",
                    "status": "ok",
                    "bucket_size": 64,
                    "slice_elements": 2**15,
                },
            ]
        )
    )
    assert list(at_default_slice_budget(rows)["bucket_size"]) == [32, 64]
    older = rows.drop(columns="slice_elements").iloc[:2]  # rows from before the sweep
    assert at_default_slice_budget(older).equals(older)
