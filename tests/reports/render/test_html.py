"""Blocks rendered to HTML, escaped, with numbers formatted once."""

from __future__ import annotations

import pandas as pd

from reports.render.document import Note, Table, fmt
from reports.render.html import render_html


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
