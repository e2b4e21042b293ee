"""The time section's series and crossover lengths."""

from __future__ import annotations

import pandas as pd

from reports.load import normalise
from reports.sections.time import crossover_rows, series_labels, uncrossed_rows
from tests.reports.synthetic import time_rows


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


def test_local_attention_is_its_own_series():
    rows = normalise(pd.DataFrame(time_rows()))
    local = (
        rows[rows["attention"] == "lsh"]
        .head(1)
        .assign(model="reformer-local-rev", attention="local", n_hashes=None)
    )
    labels = series_labels(pd.concat([rows, local], ignore_index=True))
    assert labels.iloc[-1] == "Local"
    assert "Local" not in set(labels.iloc[:-1])
