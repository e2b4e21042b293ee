"""The CI history section keeps rows with a name and a value."""

from __future__ import annotations

import pandas as pd

from reports.sections.ci_history import tidy_history
from tests.reports.synthetic import history_rows


def test_history_needs_a_name_and_a_value():
    history = tidy_history(pd.DataFrame(history_rows()))
    assert len(history) == 9
    assert list(history.loc[history["figure"] == "saved_bytes_slope_lsh", "status"]) == [
        "pass",
        "pass",
        "fail",
    ]
    assert tidy_history(pd.DataFrame([{"value": 1.0}])).empty
