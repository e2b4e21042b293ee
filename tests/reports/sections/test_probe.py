"""The quality section's attention-probe rows: newest per point, one CPU, bad lines passed."""

from __future__ import annotations

import json

from reports.sections.probe import probe_rows


def _row(**changes):
    row = {
        "kind": "attention_probe",
        "timestamp_utc": "20261207T000000Z",
        "cpu_model": "cpu A",
        "mode": "default",
        "train_attention": "lsh-1",
        "source": "training",
        "seed": 0,
        "step": 300,
        "steps": 2400,
        "seq_len": 512,
        "eval_attention": "shared-full",
        "accuracy": 0.5,
    }
    return row | changes


def test_the_newest_row_of_each_point_counts_and_bad_lines_are_skipped(tmp_path):
    folder = tmp_path / "probe"
    folder.mkdir()
    lines = [
        json.dumps(_row()),
        "not json",
        json.dumps({"kind": "something else", "accuracy": 1.0}),
        json.dumps(_row(timestamp_utc="20261207T010000Z", accuracy=0.75)),
        json.dumps(_row(eval_attention="full-with-self", accuracy=0.01)),
        json.dumps(_row(cpu_model="cpu B", accuracy=0.9)),
    ]
    (folder / "probe_default_lsh-1_x.jsonl").write_text("\n".join(lines) + "\n")
    rows = probe_rows(tmp_path, {"cpu A"})
    assert sorted(zip(rows["evaluated"], rows["accuracy_pct"], strict=True)) == [
        ("Full", 75.0),
        ("Full, self visible", 1.0),
    ]
    assert len(probe_rows(tmp_path)) == 2  # cpu B's row is the same point, and newest by order
    assert probe_rows(tmp_path / "nothing").empty
