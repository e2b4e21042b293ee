"""One vocabulary: names build and parse one way, labels come from names, and rows written
under the schema-1 spelling are read under today's and keep their keys."""

from __future__ import annotations

import json

import pytest

from reformer.config import PRESETS
from suites.harness.points import Point
from suites.rows import names
from suites.rows.store import read_rows

SCHEMA_1_ROW = {
    "suite": "quality",
    "model": "reformer-lsh",
    "attention": "full",
    "train_attention": "full",
    "eval_attention": "lsh-4",
    "n_hashes": None,
}


def test_model_names_come_from_the_config():
    config = PRESETS["debug"]
    assert names.lm_model("reformer", config) == "reformer-lsh-rev"
    assert names.lm_model("reformer", config.replace(reversible=False)) == "reformer-lsh"
    assert names.lm_model("transformer", config.replace(attention="sdpa")) == "transformer-sdpa"
    assert names.layer_model(config.replace(attention="full")) == "attn-full"
    assert [
        names.model_kind(m)
        for m in ("transformer-full", "reformer-sdpa-rev", "attn-lsh", "peer-hf")
    ] == ["transformer", "reformer", "layer", "peer"]
    with pytest.raises(ValueError, match="model='lsh'"):
        names.model_kind("lsh")


def test_run_attentions_parse_and_label():
    assert names.parse_run_attention(names.lsh_name(4)) == ("lsh", 4)
    assert names.parse_run_attention("shared-full") == ("shared-full", None)
    assert [names.label(n) for n in ("lsh-8", "shared-full", "sdpa", "attn-lsh")] == [
        "LSH-8",
        "Full",
        "SDPA",
        "attn-lsh",
    ]
    assert names.hash_rounds("lsh-2") == 2 and names.hash_rounds("shared-full") is None


def test_schema_1_rows_are_read_under_todays_names_and_map_back(tmp_path):
    path = tmp_path / "quality_cpu_x.jsonl"
    path.write_text(json.dumps(SCHEMA_1_ROW) + "\n")
    (row,), _ = read_rows(path)
    assert row["train_attention"] == "shared-full" and row["attention"] == "lsh"
    assert row["eval_attention"] == "lsh-4"
    assert names.schema_1_names(row) == SCHEMA_1_ROW
    assert names.current_names(names.current_names(SCHEMA_1_ROW)) == row


def test_a_renamed_point_keeps_its_schema_1_key():
    renamed = Point(params=names.current_names(SCHEMA_1_ROW))
    assert renamed.key("quality", "hw") == Point(params=SCHEMA_1_ROW).key("quality", "hw")
    other = Point(params={**renamed.params, "eval_attention": "lsh-8"})
    assert other.key("quality", "hw") != renamed.key("quality", "hw")
