"""Shared drawing: paper theme, a grid of line panels with one legend, guides, failure marks.

Every figure is a grid of :class:`Panel` s. Series colours come from the report palette, so a
model keeps its colour everywhere. When rows that would share a point differ in some other
config field (two d_model values, two dtypes), :func:`split_variants` turns that field into a
separate row of panels instead of drawing two values at one point.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedFormatter, FixedLocator, MaxNLocator, NullLocator

from reports.load import CONFIG_COLUMNS
from reports.render.palette import Palette
from suites.rows.samples import FEW_RULE, few_samples

PANEL_SIZE = (3.4, 2.6)  # inches; one column of a two-column paper is ~3.3 in
TITLE_WIDTH = 38  # characters a panel title holds at PANEL_SIZE before it wraps
PHASE_NAMES = {
    "fwd": "forward",
    "fwd_bwd": "forward + backward",
    "train_step": "training step",
    "n/a": "",
}
FAILURE_MARKERS = {"oom": ("X", "out of memory"), "timeout": ("v", "timed out")}
STYLE_MARKERS = ("o", "s", "^", "D", "P", "*")


def apply_theme() -> None:
    matplotlib.use("Agg", force=True)
    sns.set_theme(
        context="paper",
        style="whitegrid",
        font_scale=0.9,
        rc={"svg.fonttype": "none", "axes.titlesize": "medium"},
    )


@dataclass
class Panel:
    data: pd.DataFrame  # rows to draw (status ok)
    x: str
    y: str
    hue: str
    title: str = ""
    xlabel: str = ""
    ylabel: str = ""
    logx: float | None = 10  # log base of the x axis, None for linear
    logy: bool = True
    style: str | None = None  # a column drawn as marker/dash style
    yerr: str | None = None  # a column of error-bar half widths
    failures: pd.DataFrame | None = None  # rows with status oom/timeout, marked at the top
    guides: bool = False  # dashed O(L) and O(L^2) through the lowest first point
    hline: tuple[float, str] | None = None  # (y, label) reference line
    annotate: Callable[[plt.Axes], None] | None = None
    custom: Callable[[plt.Axes], None] | None = None  # draws the panel instead of lines
    # y is a time: points with fewer than MIN_SAMPLES timed calls (n_samples) are hollow.
    marks_few_samples: bool = False


def split_variants(
    frame: pd.DataFrame, keys: Sequence[str], ignore: Sequence[str] = ()
) -> pd.Series:
    """A label per row naming the config fields that differ between rows sharing ``keys``.

    Returns '' for every row when ``keys`` already identify the points.
    """
    if frame.empty:
        return pd.Series("", index=frame.index, dtype=object)
    candidates = [
        c for c in CONFIG_COLUMNS if c not in keys and c not in ignore and c in frame.columns
    ]
    grouped = frame.groupby(list(keys), dropna=False)
    # A field only some rows record (a failed point's child never reported num_threads)
    # varies only where two recorded values differ; a missing value joins its group's.
    varying = [c for c in candidates if (grouped[c].nunique(dropna=True) > 1).any()]
    if not varying:
        return pd.Series("", index=frame.index, dtype=object)
    filled = frame[varying].copy()
    for column in varying:
        known = grouped[column].transform(
            lambda s: s.dropna().iloc[0] if s.nunique(dropna=True) == 1 else None
        )
        filled[column] = filled[column].astype(object).where(filled[column].notna(), known)
    return filled.apply(lambda row: ", ".join(f"{c}={_short(row[c])}" for c in varying), axis=1)


def _short(value: object) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "unrecorded"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def phase_title(phase: object, *more: str) -> str:
    """A panel title in words: the phase ("forward + backward", not "phase=fwd_bwd"), then
    what else sets the panel apart ("d_model=32" as "d_model 32")."""
    parts = [PHASE_NAMES.get(str(phase), str(phase)), *more]
    return ", ".join(p.replace("=", " ") for p in parts if p)


def wrap_title(title: str, width: int = TITLE_WIDTH) -> str:
    """Break a long panel title between its comma-separated parts (never inside one, so
    "d_model 32" stays whole), so titles of neighbouring panels cannot run into each other."""
    lines: list[str] = []
    for part in title.split(", "):
        if lines and len(lines[-1]) + 2 + len(part) <= width:
            lines[-1] += ", " + part
        else:
            lines.append(part)
    return ",\n".join(lines)


def length_label(value: float) -> str:
    """A length as a reader says it: 131072 -> "128K", 1048576 -> "1M", 100 -> "100"."""
    number = float(value)
    for size, unit in ((2**20, "M"), (2**10, "K")):
        if number >= size and (number / size).is_integer():
            return f"{number / size:g}{unit}"
    return _short(value)


def value_label(value: float) -> str:
    """A log-axis tick: 0.5, 20, 3k, 1.5M (three significant digits at most)."""
    for size, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.3g}{unit}"
    return f"{value:.3g}"


def readable_log_ticks(ax: plt.Axes, axis: str = "y") -> None:
    """Label a log axis at 1, 2 and 5 times each power of ten within its limits (1, 2, 3,
    5 and 7, or evenly spaced round values, when that still gives fewer than three), so
    even a span of less than a decade shows several labelled ticks; matplotlib's default
    labels only the powers of ten, which a narrow span may not contain."""
    low, high = ax.get_ylim() if axis == "y" else ax.get_xlim()
    if not (np.isfinite(low) and np.isfinite(high)) or low <= 0 or high <= low:
        return
    decades = range(int(np.floor(np.log10(low))), int(np.ceil(np.log10(high))) + 1)
    ticks: list[float] = []
    for steps in ((1, 2, 5), (1, 2, 3, 5, 7)):
        ticks = [m * 10.0**k for k in decades for m in steps if low <= m * 10.0**k <= high]
        if len(ticks) >= 3:
            break
    else:  # a narrow span: evenly spaced round values, as on a linear axis
        spaced = MaxNLocator(nbins=4, steps=[1, 2, 2.5, 5, 10]).tick_values(low, high)
        ticks = [float(t) for t in spaced if low <= t <= high and t > 0]
    if len(ticks) > 8:  # many decades: the powers of ten alone
        ticks = [t for t in ticks if np.isclose(np.log10(t), round(np.log10(t)))]
    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_major_locator(FixedLocator(ticks))
    target.set_major_formatter(FixedFormatter([value_label(t) for t in ticks]))
    target.set_minor_locator(NullLocator())
    if axis == "y":
        ax.set_ylim(low, high)
    else:
        ax.set_xlim(low, high)


def ordered(values: pd.Series, preferred: Sequence[str] = ()) -> list:
    """Unique values: those in ``preferred`` first in that order, then the rest sorted."""
    present = list(dict.fromkeys(values.dropna().tolist()))
    first = [v for v in preferred if v in present]
    return first + sorted((v for v in present if v not in first), key=str)


def draw_panels(grid: list[list[Panel]], palette: Palette) -> plt.Figure:
    """One figure, one panel per cell of ``grid`` (rows may differ in length), one legend."""
    n_rows, n_cols = len(grid), max(len(row) for row in grid)
    figure, axes = plt.subplots(
        n_rows,
        n_cols,
        squeeze=False,
        figsize=(PANEL_SIZE[0] * n_cols, PANEL_SIZE[1] * n_rows),
    )
    labels: set[str] = set()
    styles: dict[str, str] = {}
    extras: dict[str, Line2D] = {}
    for r, row in enumerate(grid):
        for c in range(n_cols):
            ax = axes[r][c]
            if c >= len(row):
                ax.set_visible(False)
                continue
            panel = row[c]
            labels.update(panel.data[panel.hue].dropna().astype(str))
            _draw(ax, panel, palette, styles, extras)
    handles = [
        Line2D([], [], color=palette.colours[label], marker="o", label=label)
        for label in palette.hue_order(labels)
    ]
    handles += [
        Line2D([], [], color="0.3", marker=marker, label=name) for name, marker in styles.items()
    ]
    handles += list(extras.values())
    if handles:
        figure.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    figure.tight_layout()
    return figure


def _draw(
    ax: plt.Axes, panel: Panel, palette: Palette, styles: dict[str, str], extras: dict[str, Line2D]
) -> None:
    if panel.custom is not None:
        panel.custom(ax)
        ax.set_title(wrap_title(panel.title))
        return
    data = panel.data.dropna(subset=[panel.x, panel.y])
    if panel.logx:
        ax.set_xscale("log", base=panel.logx)
    if panel.logy:
        ax.set_yscale("log")
    for label in palette.hue_order(data[panel.hue].astype(str)):
        series = data[data[panel.hue].astype(str) == label]
        groups = [(None, series)] if panel.style is None else list(series.groupby(panel.style))
        for style_value, part in groups:
            marker = "o"
            if panel.style is not None:
                name = str(style_value)
                marker = styles.setdefault(name, STYLE_MARKERS[len(styles) % len(STYLE_MARKERS)])
            part = part.sort_values(panel.x)
            yerr = part[panel.yerr] if panel.yerr and part[panel.yerr].notna().all() else None
            ax.errorbar(
                part[panel.x],
                part[panel.y],
                yerr=yerr,
                color=palette.colours[label],
                marker=marker,
                markersize=4,
                linewidth=1.2,
                capsize=2,
            )
            if panel.marks_few_samples:
                _hollow_few(ax, part, panel, palette.colours[label], marker, extras)
    if panel.failures is not None and not panel.failures.empty:
        _mark_failures(ax, panel, palette, extras)
    if panel.guides and not data.empty:
        _guides(ax, data[panel.x].to_numpy(float), data, panel, extras)
    if panel.hline is not None:
        ax.axhline(panel.hline[0], color="0.4", linewidth=0.8, linestyle=":")
        extras.setdefault(
            panel.hline[1], Line2D([], [], color="0.4", linestyle=":", label=panel.hline[1])
        )
    if panel.annotate is not None:
        panel.annotate(ax)
    if panel.logx == 2:
        ticks = sorted(set(data[panel.x].dropna()) | _failure_x(panel))
        if ticks:
            ax.set_xticks(ticks, [length_label(t) for t in ticks])
            ax.minorticks_off()
    elif panel.logx:
        readable_log_ticks(ax, "x")
    if panel.logy:
        readable_log_ticks(ax, "y")
    ax.set_title(wrap_title(panel.title))
    ax.set_xlabel(panel.xlabel or panel.x)
    ax.set_ylabel(panel.ylabel or panel.y)


def _hollow_few(
    ax: plt.Axes,
    part: pd.DataFrame,
    panel: Panel,
    colour: str | tuple[float, ...],
    marker: str,
    extras: dict[str, Line2D],
) -> None:
    """Draw the points of ``part`` timed from too few samples hollow, over their markers."""
    if "n_samples" not in part:
        return
    few = part[part["n_samples"].map(few_samples)]
    if few.empty:
        return
    ax.plot(
        few[panel.x],
        few[panel.y],
        linestyle="none",
        marker=marker,
        markersize=4,
        markerfacecolor="white",
        markeredgecolor=colour,
        zorder=4,
    )
    extras.setdefault(
        FEW_RULE,
        Line2D(
            [],
            [],
            color="0.3",
            marker="o",
            markerfacecolor="white",
            linestyle="none",
            label=f"hollow: {FEW_RULE}",
        ),
    )


def _failure_x(panel: Panel) -> set:
    if panel.failures is None:
        return set()
    return set(panel.failures[panel.x].dropna())


def _mark_failures(ax: plt.Axes, panel: Panel, palette: Palette, extras: dict[str, Line2D]) -> None:
    """Failed points have no y: mark them on the top edge at their x, in the series colour."""
    if panel.failures is None:
        return
    edge = ax.get_xaxis_transform()  # x in data, y in axes fraction
    for status, (marker, name) in FAILURE_MARKERS.items():
        rows = panel.failures[panel.failures["status"] == status].dropna(subset=[panel.x])
        for label in palette.hue_order(rows[panel.hue].astype(str)):
            xs = rows[rows[panel.hue].astype(str) == label][panel.x]
            # A line in a blended transform widens the x limits only, so the marks stay in view.
            ax.plot(
                xs,
                np.full(len(xs), 0.96),
                transform=edge,
                linestyle="none",
                marker=marker,
                markersize=7,
                color=palette.colours[label],
                markeredgecolor="black",
                markeredgewidth=0.5,
                zorder=5,
                clip_on=False,
            )
        if not rows.empty:
            extras.setdefault(
                name,
                Line2D(
                    [],
                    [],
                    color="0.3",
                    marker=marker,
                    linestyle="none",
                    markeredgecolor="black",
                    label=name,
                ),
            )


def _guides(
    ax: plt.Axes, xs: np.ndarray, data: pd.DataFrame, panel: Panel, extras: dict[str, Line2D]
) -> None:
    """Dashed O(L) and O(L^2) through the cheapest point at the shortest length."""
    x0 = xs.min()
    x1 = max(xs.max(), *_failure_x(panel)) if _failure_x(panel) else xs.max()
    if x1 <= x0:
        return
    y0 = data.loc[data[panel.x] == x0, panel.y].min()
    span = np.geomspace(x0, x1, 20)
    y_limits = ax.get_ylim()  # the guides must not stretch the axis away from the data
    for power, dash, name in ((1, (4, 2), "O(L) guide"), (2, (1.5, 1.5), "O(L²) guide")):
        ax.plot(span, y0 * (span / x0) ** power, color="0.55", linewidth=0.9, dashes=dash, zorder=1)
        extras.setdefault(name, Line2D([], [], color="0.55", dashes=dash, label=name))
    ax.set_ylim(*y_limits)
