"""Figures 3-5: the ablations. Hash rounds, chunk size, and reversibility with depth.

Each sweeps one config field and draws time and memory against it,
one colour per model; fields that also differ between rows (length, phase) become rows of
panels. The hashes figure draws local attention (one round, no hash: the zero-round point,
which a log axis of rounds cannot place) as a dotted line in each panel, and adds
duplication-task accuracy against evaluation hash rounds when quality results exist.
"""

from __future__ import annotations

import dataclasses

import pandas as pd

from reports.context import ReportContext
from reports.render.document import Block, Paragraph
from reports.render.plotting import Panel, draw_panels, ordered, phase_title, split_variants
from suites.rows.names import LOCAL, hash_rounds, label
from suites.rows.quality_matrix import counts_in_matrix, percent

_METRICS = (
    ("t_median_ms", "time per step (ms)"),
    ("peak_mib", "peak memory (MiB)"),
    ("saved_mib", "saved for backward (MiB)"),
)


def sweep_grid(
    rows: pd.DataFrame,
    x: str,
    xlabel: str,
    logx: float | None,
    style: str | None = None,
    metrics=_METRICS,
    logy: bool = True,
) -> list[list[Panel]]:
    """One row of panels per variant, one panel per metric that has values."""
    keys = ["model", x, "phase"] + ([style] if style else [])
    rows = rows.assign(variant=split_variants(rows, keys, ignore=("n_buckets",)))
    ok = rows[rows["status"] == "ok"]
    failures = rows[rows["status"].isin(["oom", "timeout"])]
    grid = []
    for variant in ordered(rows["variant"]):
        for phase in ordered(rows["phase"]):
            cell = ok[(ok["variant"] == variant) & (ok["phase"] == phase)]
            fail = failures[(failures["variant"] == variant) & (failures["phase"] == phase)]
            title = phase_title(phase, variant)
            panels = [
                Panel(
                    data=cell[cell[metric] > 0],
                    x=x,
                    y=metric,
                    hue="model",
                    style=style,
                    failures=fail,
                    title=title,
                    xlabel=xlabel,
                    ylabel=label,
                    logx=logx,
                    logy=logy,
                    marks_few_samples=metric == "t_median_ms",
                )
                for metric, label in metrics
                if (cell[metric] > 0).any()
            ]
            if panels:
                grid.append(panels)
    return grid


def matrix_rows(rows: pd.DataFrame) -> pd.Series:
    """Which rows count for the duplication matrix (suites.rows.quality_matrix.counts_in_matrix),
    as a mask on ``rows``."""
    mask = [counts_in_matrix(row) for row in rows.to_dict("records")]
    return pd.Series(mask, index=rows.index, dtype=bool)


def duplication_accuracy(rows: pd.DataFrame) -> pd.DataFrame:
    """Quality rows of the duplication task with eval hash rounds parsed from eval_attention."""
    if "task" not in rows.columns or "accuracy" not in rows.columns:
        return rows.iloc[0:0]
    dup = rows[matrix_rows(rows)]
    rounds = dup["eval_attention"].map(hash_rounds).astype(float)
    return dup.assign(
        eval_hashes=rounds,
        accuracy=dup["accuracy"].map(percent),
        trained_with=dup["train_attention"].map(label),
    )[rounds.notna()]


def with_local_lines(grid: list[list[Panel]], local: pd.DataFrame) -> list[list[Panel]]:
    """Each panel with local attention's value at its length and phase as a reference line
    (where the panel holds one length, one phase, and local attention ran there)."""
    ok = local[local["status"] == "ok"]

    def line(panel: Panel) -> Panel:
        lengths, phases = panel.data["seq_len"].unique(), panel.data["phase"].unique()
        if len(lengths) != 1 or len(phases) != 1:
            return panel
        same = ok[(ok["seq_len"] == lengths[0]) & (ok["phase"] == phases[0])][panel.y]
        if same.dropna().empty:
            return panel
        return dataclasses.replace(panel, hline=(float(same.median()), "Local (no hash)"))

    return [[line(panel) for panel in row] for row in grid]


def build_hashes(ctx: ReportContext) -> list[Block] | None:
    rows = ctx.suite("hashes")
    local = rows["attention"] == LOCAL if "attention" in rows else pd.Series(False, rows.index)
    grid = sweep_grid(rows[~local], "n_hashes", "hash rounds n_hashes", logx=2)
    grid = with_local_lines(grid, rows[local])
    accuracy = duplication_accuracy(ctx.suite("quality"))
    if not accuracy.empty:
        panel = Panel(
            data=accuracy,
            x="eval_hashes",
            y="accuracy",
            hue="trained_with",
            title="duplication task (colour: trained with)",
            xlabel="hash rounds at evaluation",
            ylabel="accuracy (%)",
            logx=2,
            logy=False,
        )
        grid = [[*grid[0], panel], *grid[1:]] if grid else [[panel]]
    if not grid:
        return None
    cost = not ctx.suite("hashes").empty
    drawn = [
        *(["time and memory against n_hashes (hashes suite)"] if cost else []),
        *(
            ["duplication-task accuracy against the hash rounds used at evaluation (quality suite)"]
            if not accuracy.empty
            else []
        ),
    ]
    title = {
        (True, False): "Hash rounds: what more rounds cost",
        (False, True): "Hash rounds: duplication accuracy against the rounds at evaluation",
        (True, True): "Hash rounds: what more rounds cost, and duplication accuracy",
    }[(cost, not accuracy.empty)]
    text = "This section draws " + " and ".join(drawn) + "."
    if not cost:
        text += " There are no hashes-suite rows, so the cost of more rounds is not drawn."
    suites = (*(["hashes"] if cost else []), *(["quality"] if not accuracy.empty else []))
    return [
        Paragraph(text),
        ctx.save(
            draw_panels(grid, ctx.palette),
            "hashes_ablation",
            title,
            "Hash-rounds ablation.",
            ctx.commands(*suites),
            suites,
        ),
    ]


def at_default_slice_budget(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows of the chunks suite's bucket_size sweep: those at the default slice budget.

    A row records ``slice_elements`` only where its point set it away from the default
    (docs/results.md), so the slice sweep's other points, which share bucket_size 64,
    are the rows that have it; drawn with the rest, they would stack at c = 64."""
    if "slice_elements" not in rows.columns:
        return rows
    return rows[rows["slice_elements"].isna()]


def build_chunks(ctx: ReportContext) -> list[Block] | None:
    rows = at_default_slice_budget(ctx.suite("chunks"))
    grid = sweep_grid(rows, "bucket_size", "chunk (bucket) size c", logx=2)
    if not grid:
        return None
    recorded = rows["backend"].dropna().astype(str) if "backend" in rows else []
    backends = ", ".join(sorted(set(recorded))) or "unrecorded"
    return [
        Paragraph(
            "Cost against chunk size: each chunk of c sorted positions attends to itself "
            "and the previous chunk, so attention work per token grows with c. Drawn at "
            f"the default slice budget (LSH backend: {backends}); the suite's "
            "slice_elements sweep runs the torch path and is tabulated under Measured "
            "numbers, one line per backend and budget."
        ),
        ctx.save(
            draw_panels(grid, ctx.palette),
            "chunks_ablation",
            "Chunk size: cost against bucket_size",
            "Chunk-size ablation.",
            ctx.commands("chunks"),
            ("chunks",),
        ),
    ]


def layout_label(row: pd.Series) -> str:
    residual = "reversible" if row["reversible"] in (True, "true", "True", 1) else "plain residual"
    chunks = row["ff_chunks"]
    if pd.notna(chunks) and chunks > 1:
        return f"{residual}, FF in {int(chunks)} chunks"
    return residual


def build_reversible(ctx: ReportContext) -> list[Block] | None:
    rows = ctx.suite("reversible")
    if rows.empty:
        return None
    rows = rows.assign(layout=rows.apply(layout_label, axis=1))
    metrics = [m for m in _METRICS if m[0] != "t_median_ms"] + [_METRICS[0]]
    grid = sweep_grid(
        rows, "n_layers", "layers n_layers", logx=None, style="layout", metrics=metrics, logy=False
    )
    if not grid:
        return None
    return [
        Paragraph(
            "Memory against depth with reversible residuals on/off and chunked "
            "feed-forward on/off: with reversible layers only one layer's activations "
            "are stored, so peak memory should stay flat in n_layers (paper sec. 3)."
        ),
        ctx.save(
            draw_panels(grid, ctx.palette),
            "reversible_depth",
            "Reversibility and depth: memory against n_layers",
            "Reversibility and depth: colour = model, marker = residual layout.",
            ctx.commands("reversible"),
            ("reversible",),
        ),
    ]
