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


def test_shared_qk_full_and_materialised_full_attention_are_labelled_apart():
    """One word per idea: the paper's "Full" (exact shared-QK attention) is not the
    baselines' materialised separate-QK attention, though both are exact."""
    assert names.label("shared-full") == "Full"
    assert names.label("full") == "Full (materialised)"


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


# A schema-1 row as the memory suite wrote it (fields in the order it wrote them).
SCHEMA_1_MEMORY_ROW = {
    "schema_version": 1,
    "suite": "memory",
    "model": "reformer-lsh-rev",
    "pass": "train_step",
    "seq_len": 1024,
    "peak_mb": 512.5,
    "reserved_mb": None,
    "nvml_peak_mb": None,
    "saved_mb": 100.25,
    "mode": "full",
    "attention": "full",  # the attention of that name, not schema 1's shared-full
}
SCHEMA_2_MEMORY_ROW = {
    "schema_version": 1,  # what the file says, kept
    "suite": "memory",
    "model": "reformer-lsh-rev",
    "phase": "train_step",
    "seq_len": 1024,
    "peak_mib": 512.5,
    "reserved_mib": None,
    "nvml_peak_mib": None,
    "saved_mib": 100.25,
    "mode": "paper",
    "attention": "full",
}


def test_schema_1_fields_and_mode_are_read_under_todays_names(tmp_path):
    path = tmp_path / "memory_cpu_x.jsonl"
    without_version = {k: v for k, v in SCHEMA_1_MEMORY_ROW.items() if k != "schema_version"}
    path.write_text(json.dumps(SCHEMA_1_MEMORY_ROW) + "\n" + json.dumps(without_version) + "\n")
    (row, unversioned), problems = read_rows(path)
    assert not problems
    assert list(row.items()) == list(SCHEMA_2_MEMORY_ROW.items())  # same values, same places
    assert unversioned == {k: v for k, v in row.items() if k != "schema_version"}
    assert SCHEMA_1_MEMORY_ROW["peak_mb"] == 512.5  # the row read is a copy


def test_current_names_is_idempotent_and_leaves_todays_rows_alone():
    for old in (SCHEMA_1_ROW, SCHEMA_1_MEMORY_ROW):
        once = names.current_names(old)
        assert names.current_names(once) == once
    today = {**SCHEMA_2_MEMORY_ROW, "schema_version": 2}
    assert names.current_names(today) is today
    # Schema 2 writes "full" only as the attention of that name: never renamed.
    quality = {
        "schema_version": 2,
        "train_attention": "sdpa",
        "eval_attention": "full",
        "mode": "full",
    }
    assert names.current_names(quality) is quality


def test_an_old_field_beside_its_new_name_is_not_renamed_over_it():
    row = {"pass": "fwd", "phase": "train_step"}
    assert names.current_names(row) == row


def test_the_types_of_an_old_rows_fields_are_checked_under_todays_names(tmp_path):
    path = tmp_path / "memory_cpu_x.jsonl"
    path.write_text(json.dumps({**SCHEMA_1_MEMORY_ROW, "peak_mb": "512"}) + "\n")
    rows, problems = read_rows(path)
    assert rows == [] and "peak_mib='512' must be a finite number >= 0" in problems[0]


def test_a_point_measured_as_pass_keeps_its_key_as_phase():
    schema_1 = {"model": "attn-lsh", "pass": "fwd_bwd", "seq_len": 64}
    today = names.current_names(schema_1)
    assert today == {"model": "attn-lsh", "phase": "fwd_bwd", "seq_len": 64}
    assert names.schema_1_names(today) == schema_1
    assert Point(params=today).key("hashes", "hw") == Point(params=schema_1).key("hashes", "hw")
    assert names.schema_1_mode("paper") == "full"
    assert names.schema_1_mode("quick") == "quick"
