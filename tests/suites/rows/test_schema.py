"""The torch-free row schema (suites.rows) says what the model-side modules derive."""

from __future__ import annotations

from reformer.config import ATTENTIONS as CONFIG_ATTENTIONS
from suites.harness.spec import CONFIG_FIELDS
from suites.registry import load_suites
from suites.rows.names import ATTENTIONS
from suites.rows.schema import (
    HARNESS_FIELDS,
    ROW_CONFIG_FIELDS,
    SCHEMA_1_CONFIG_FIELDS,
    SUITE_ORDER,
)


def test_row_config_fields_match_the_config() -> None:
    derived = (
        "model",
        *(name for name in CONFIG_FIELDS if name in SCHEMA_1_CONFIG_FIELDS),
        *HARNESS_FIELDS[1:],
    )
    assert derived == ROW_CONFIG_FIELDS


def test_attention_names_match_the_config() -> None:
    assert ATTENTIONS == CONFIG_ATTENTIONS


def test_suite_order_lists_every_suite() -> None:
    assert set(SUITE_ORDER) == set(load_suites())
