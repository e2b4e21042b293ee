"""The decode section: batch-1 findings whatever other batches the rows hold, and every
row's tokens/s per sequence."""

from __future__ import annotations

import pandas as pd

from reports.load import normalise
from reports.sections.decode import targets, with_batch
from tests.reports.synthetic import batched_decode_rows, decode_rows


def test_findings_read_batch_1_rows_and_every_row_has_tokens_per_second_per_sequence():
    rows = with_batch(normalise(pd.DataFrame(decode_rows())))
    assert set(rows["batch"]) == {1, 8}
    single = rows[rows["batch"] == 1]
    # Rows written before tokens_per_s_per_seq (batch 1): it is their total.
    assert (single["tokens_per_s_per_seq"] == single["tokens_per_s"]).all()
    batched = rows[rows["batch"] == 8]
    assert (batched["tokens_per_s"] == 8 * batched["tokens_per_s_per_seq"]).all()
    text = targets(single)
    assert "LSH per token, 65536 / 4096 context: 1.00x" in text
    assert targets(rows) != text  # mixing in batch 8 would move the findings


def test_the_synthetic_batch_rows_are_batch_8():
    assert {row["batch"] for row in batched_decode_rows()} == {8}
