"""Shared drawing: log axes a reader can read, lengths and titles in words, and which
fields split a model's line."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from reports.load import normalise
from reports.render.palette import Palette
from reports.render.plotting import (
    Panel,
    apply_theme,
    draw_panels,
    length_label,
    split_variants,
    wrap_title,
)
from tests.reports.synthetic import memory_rows


def _labels(ax, axis: str) -> list[str]:
    """Tick labels a reader sees on one axis: non-empty, inside the view limits."""
    ax.figure.canvas.draw()
    target, (low, high) = (ax.yaxis, ax.get_ylim()) if axis == "y" else (ax.xaxis, ax.get_xlim())
    shown = []
    for ticks in (target.get_major_ticks(), target.get_minor_ticks()):
        for tick in ticks:
            text = tick.label1.get_text()
            if text and tick.label1.get_visible() and low <= tick.get_loc() <= high:
                shown.append(text)
    return shown


@pytest.mark.parametrize(
    "values",
    [[0.144, 0.148, 0.156, 0.172], [0.81, 0.95, 1.07, 1.19], [6.1, 20.4, 35.0, 71.0]],
)
def test_every_log_axis_shows_at_least_three_tick_labels(values):
    """Spans narrower than a decade (a smoke grid's numbers) got one label or none."""
    apply_theme()
    data = pd.DataFrame({"n_hashes": [1, 2, 4, 8], "mib": values, "model": "attn-lsh"})
    panel = Panel(data=data, x="n_hashes", y="mib", hue="model", logx=2, title="t")
    figure = draw_panels([[panel]], Palette(["attn-lsh"]))
    (ax,) = figure.axes
    assert len(_labels(ax, "y")) >= 3, _labels(ax, "y")
    assert _labels(ax, "x") == ["1", "2", "4", "8"]
    plt.close(figure)


def test_lengths_and_titles_read_as_words():
    assert [length_label(x) for x in (256, 1024, 131072, 2**20, 3000)] == [
        "256",
        "1K",
        "128K",
        "1M",
        "3000",
    ]
    title = "forward + backward, d_model 256, n_heads 4, seq_len 1024"
    assert wrap_title(title) == "forward + backward, d_model 256,\nn_heads 4, seq_len 1024"


def test_split_variants_names_only_colliding_fields():
    rows = normalise(pd.DataFrame(memory_rows()[:3]))
    assert set(split_variants(rows, ["model", "phase", "seq_len"])) == {""}
    wide = rows.assign(d_model=[64, 128, 64], seq_len=[512, 512, 1024])
    assert list(split_variants(wide, ["model", "phase", "seq_len"])) == [
        "d_model=64",
        "d_model=128",
        "d_model=64",
    ]
