"""The scale figure: one line per model, depth and autocast, lengths read as words."""

from __future__ import annotations

import json

import pandas as pd

from reports.build import build_reports
from reports.sections.scale import series_labels

DPI = 30


def test_the_scale_figure_draws_each_depth_and_autocast_as_its_own_line(tmp_path):
    base = {"model": "reformer-lsh-rev", "n_layers": 2, "autocast": None}
    rows = pd.DataFrame(
        [
            base,
            {**base, "n_layers": 12},
            {**base, "autocast": "bfloat16"},
        ]
    )
    assert list(series_labels(rows)) == [
        "reformer-lsh-rev, 2 layers",
        "reformer-lsh-rev, 12 layers",
        "reformer-lsh-rev, 2 layers, bfloat16 autocast",
    ]
    assert list(series_labels(rows.iloc[:1])) == ["reformer-lsh-rev"]


def test_the_committed_scale_rows_draw_three_lines_and_no_offset_label(tmp_path):
    """The 2-layer, 12-layer and bf16 points of the 2^17-2^20 scale run: three lines (each
    x at most once per line), and the longest-length panel labels lengths, not '1e6'."""
    rows = []
    for seq_len, layers, cast, peak in (
        (2**17, 2, None, 1869.5),
        (2**17, 2, "bfloat16", 1589.6),
        (2**18, 2, None, 3542.0),
        (2**18, 12, None, 3544.6),
        (2**19, 2, None, 6861.1),
        (2**20, 2, None, 12993.7),
    ):
        row = {
            "suite": "scale",
            "model": "reformer-lsh-rev",
            "status": "ok",
            "seq_len": seq_len,
            "n_layers": layers,
            "phase": "train_step",
            "device": "cpu",
            "cpu_model": "Test CPU",
            "peak_mib": peak,
            "t_median_ms": peak * 100,
            "max_memory_gb": 16.0,
            "timestamp_utc": "2024-05-01T12:00:00Z",
            "run_id": "scale_one",
            "point_key": f"{seq_len}-{layers}-{cast}",
        }
        if cast:
            row["autocast"] = cast
        rows.append(row)
    results = tmp_path / "results"
    results.mkdir()
    (results / "scale_one.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (report,) = build_reports(str(results), str(tmp_path / "out"), dpi=DPI)
    svg = (report / "figures" / "scale.svg").read_text()
    for line in ("2 layers", "12 layers", "2 layers, bfloat16 autocast"):
        assert f"reformer-lsh-rev, {line}<" in svg
    assert "1M" in svg and "1e6" not in svg and "1048576" not in svg
