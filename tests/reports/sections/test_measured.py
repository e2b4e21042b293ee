"""The point counts and the paper-form tables spell failures out."""

from __future__ import annotations

import pandas as pd

from reports.load import latest_points, normalise
from reports.sections.front_matter import counts_table
from reports.sections.measured import paper_form
from suites.rows.samples import FEW_MARK, MIN_SAMPLES
from tests.reports.synthetic import memory_rows


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


def _point(model: str, bucket: int, ms: float, **fields: object) -> dict:
    return {
        "suite": "chunks",
        "model": model,
        "status": "ok",
        "seq_len": 4096,
        "bucket_size": bucket,
        "phase": "fwd_bwd",
        "t_median_ms": ms,
        "n_samples": 5,
        **fields,
    }


def test_a_series_field_beside_the_config_keeps_its_own_line():
    """The chunks suite's slice sweep (torch path) shares bucket_size 64 with the fused
    kernel's point; the decode suite's SDPA model runs with and without a cache: neither
    may be spliced into the other's cell."""
    rows = normalise(
        pd.DataFrame(
            [
                _point("attn-lsh", 64, 225.0, backend="cpu"),
                _point("attn-lsh", 64, 367.0, backend="torch", slice_elements=8388608),
                _point("attn-lsh", 32, 130.0, backend="cpu"),
            ]
        )
    )
    table = paper_form(rows, "t_median_ms").set_index(["bucket_size", "backend", "slice_elements"])
    assert table.loc[("64", "cpu", "default"), "4096"] == "225"
    assert table.loc[("64", "torch", "8388608"), "4096"] == "367"
    decode = normalise(
        pd.DataFrame(
            [
                dict(_point("transformer-sdpa", 0, 879.0, cache="none"), suite="decode"),
                dict(_point("transformer-sdpa", 0, 6.57, cache="kv"), suite="decode"),
            ]
        )
    )
    cached = paper_form(decode, "t_median_ms").set_index("cache")
    assert cached.loc["none", "4096"] == "879" and cached.loc["kv", "4096"] == "6.57"


def test_a_time_from_too_few_samples_is_marked_and_the_caption_says_why():
    rows = normalise(
        pd.DataFrame(
            [
                _point("attn-lsh", 32, 130.0, n_samples=MIN_SAMPLES),
                _point("attn-lsh", 64, 571.0, n_samples=1),
            ]
        )
    )
    table = paper_form(rows, "t_median_ms").set_index("bucket_size")
    assert table.loc["32", "4096"] == "130"
    assert table.loc["64", "4096"] == f"571 {FEW_MARK}"
    # memory does not depend on how often a step was timed
    assert FEW_MARK not in paper_form(rows.assign(peak_mib=10.0), "peak_mib").to_string()
