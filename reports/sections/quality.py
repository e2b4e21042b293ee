"""Quality: the Table 2 duplication matrix beside the paper's, and bits per byte.

Quality rows extend the result row with task, train_attention, eval_attention, accuracy
and bits_per_byte (and ``step`` for points along training). Rows record accuracy as a
fraction; it is shown in percent. Which rows are final (the matrix's and the byte-LM
tables') is suites.rows.quality_matrix's rule, the suite summary's too. After the matrix,
the attention probe of the trained models, where one was written (reports.sections.probe).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from reports.context import ReportContext
from reports.render.document import Block, Note, Paragraph, Table, fmt
from reports.render.plotting import PANEL_SIZE, Panel, draw_panels, ordered, split_variants
from reports.sections.ablations import matrix_rows
from reports.sections.probe import probe_blocks
from reports.sections.published import TABLE2, TABLE2_EVAL, table2
from suites.rows import paper
from suites.rows.names import decoded_attention, label
from suites.rows.quality_matrix import final_accuracies, final_indices

# The floors on the reduced duplication task (suites.rows.paper), under report labels.
EXPECTATIONS = tuple(
    (label(trained), label(evaluated), floor) for trained, evaluated, floor in paper.EXPECTATIONS
)


def _final_rows(rows: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The final row of each group of ``keys``: its largest step, the newest among equals
    (suites.rows.quality_matrix.final_indices, the suite summary's rule too)."""
    cells = list(rows[keys].itertuples(index=False, name=None))
    keep = final_indices(cells, _column(rows, "step"), _column(rows, "timestamp_utc"))
    return rows.iloc[keep]


def _column(rows: pd.DataFrame, name: str) -> list[object]:
    return list(rows[name]) if name in rows else [None] * len(rows)


def duplication_matrices(rows: pd.DataFrame, stat: str = "mean") -> dict[str, pd.DataFrame]:
    """{variant label: trained x evaluated} from each seed's final row in each cell
    (suites.rows.quality_matrix.final_accuracies): the mean accuracy (%) over seeds, its
    standard deviation (``stat="std"``, NaN for one seed) or the number of seeds
    (``stat="seeds"``)."""
    if stat not in ("mean", "std", "seeds"):
        raise ValueError(f"stat={stat!r} is unknown; allowed: ('mean', 'std', 'seeds')")
    dup = rows[matrix_rows(rows)]
    if dup.empty:
        return {}
    keys = ["trained", "evaluated"]
    labelled = dup.assign(
        trained=dup["train_attention"].map(label), evaluated=dup["eval_attention"].map(label)
    )
    # bucket_size is empty for full-attention-trained rows: it must not split a matrix;
    # seeds are the matrix's samples, not variants.
    variant = split_variants(
        labelled,
        [*keys, "model", "attention", "n_hashes"],
        ignore=("n_buckets", "bucket_size", "seed"),
    )
    steps = _run_length(dup, "steps={:g}")
    variant = (variant + ", ").where((variant != "") & (steps != ""), variant) + steps
    finals = final_accuracies(dup.to_dict("records"), list(variant))
    per_seed = pd.DataFrame(
        {
            "variant": [final.variant for final in finals],
            "trained": [label(final.trained) for final in finals],
            "evaluated": [label(final.evaluated) for final in finals],
            "accuracy": [final.accuracy for final in finals],
        }
    )
    aggregate = {"mean": "mean", "std": "std", "seeds": "count"}[stat]
    cells = (
        per_seed.groupby(["variant", *keys], sort=False)["accuracy"].agg(aggregate).reset_index()
    )
    matrices = {}
    for name in ordered(cells["variant"]):
        part = cells[cells["variant"] == name]
        matrix = part.pivot_table(
            index="trained", columns="evaluated", values="accuracy", aggfunc="last", dropna=False
        )
        matrices[name] = matrix.reindex(
            index=ordered(pd.Series(matrix.index), list(TABLE2)),
            columns=ordered(pd.Series(matrix.columns), TABLE2_EVAL),
        )
    return matrices


def seeds_label(seeds: pd.DataFrame) -> str:
    """'3 seeds (mean ± standard deviation)' or '1 seed' for a matrix of seed counts."""
    counts = sorted({int(n) for n in seeds.to_numpy().ravel() if pd.notna(n)})
    if counts == [1]:
        return "1 seed"
    text = "/".join(str(n) for n in counts)
    return f"{text} seeds per cell (mean ± standard deviation)"


def _with_spread(mean: pd.DataFrame, spread: pd.DataFrame) -> pd.DataFrame:
    """Cells 'mean ± sd' (%, one decimal as in Table 2) where a cell has several seeds,
    else the mean."""

    def cell(m: float, s: float) -> str:
        if pd.isna(m):
            return ""
        return f"{m:.1f}" if pd.isna(s) else f"{m:.1f} ± {s:.1f}"

    return pd.DataFrame(
        [[cell(m, s) for m, s in zip(mean.loc[i], spread.loc[i], strict=True)] for i in mean.index],
        index=mean.index,
        columns=mean.columns,
    )


def _run_length(rows: pd.DataFrame, template: str) -> pd.Series:
    """Each row's training length in ``template`` where rows hold runs of several lengths
    (results of several sizes under one folder), else ''."""
    if "steps" not in rows or rows["steps"].nunique() < 2:
        return pd.Series("", index=rows.index)
    return rows["steps"].map(template.format)


def expectation_table(matrix: pd.DataFrame) -> pd.DataFrame:
    found = []
    for trained, evaluated, floor in EXPECTATIONS:
        if trained in matrix.index and evaluated in matrix.columns:
            value = matrix.loc[trained, evaluated]
            if pd.notna(value):
                found.append(
                    {
                        "trained": trained,
                        "evaluated": evaluated,
                        "expected": f"≥ {floor}",
                        "measured": fmt(value),
                        "met": "yes" if value >= floor else "NO",
                    }
                )
    return pd.DataFrame(found)


def build_quality(ctx: ReportContext) -> list[Block] | None:
    rows = ctx.ok("quality")
    if rows.empty:
        return None
    blocks: list[Block] = []
    matrices = duplication_matrices(rows)
    spreads, seeds = duplication_matrices(rows, "std"), duplication_matrices(rows, "seeds")
    if matrices:
        blocks.append(
            Paragraph(
                "Duplication task (sequences 0w0w, accuracy on the second "
                "half), Table 2 style: rows trained with, columns evaluated "
                "with. Ours first, the paper's published matrix separately. "
                "Single runs of this task vary with when training escapes "
                "its plateau: the number of seeds is given with each matrix "
                "(`--seeds N` trains N)."
            )
        )
        blocks.append(
            ctx.save(
                _heatmaps(matrices, spreads, seeds),
                "quality_table2",
                "Duplication task accuracy, Table 2 layout",
                "Duplication accuracy (%): ours (measured here) and Reformer "
                "Table 2 (published, other hardware and scale).",
                ctx.commands("quality"),
                ("quality",),
            )
        )
        for variant, matrix in matrices.items():
            label = f" ({variant})" if variant else ""
            blocks.append(
                Table(
                    _with_spread(matrix, spreads[variant]),
                    f"Ours{label}: accuracy (%), {seeds_label(seeds[variant])}.",
                )
            )
            checks = expectation_table(matrix)
            if not checks.empty:
                blocks.append(Table(checks, "Expectations on the reduced task.", index=False))
        published = table2()
        blocks.append(Table(published.text(), published.caption()))
    else:
        blocks.append(Note("No duplication-task accuracy rows: Table 2 matrix omitted."))
    blocks.extend(probe_blocks(ctx))
    blocks.extend(_bits_per_byte(ctx, rows))
    blocks.extend(_decoding_table(rows))
    return blocks


def _decoding_table(rows: pd.DataFrame) -> list[Block]:
    """Byte-LM bits per byte, full forward against teacher-forced incremental decoding,
    per number of rounds (mean over seeds), for each shared-QK model."""
    if "eval_attention" not in rows or "bits_per_byte" not in rows:
        return []
    lm = rows[rows["bits_per_byte"].notna() & rows["eval_attention"].notna()]
    decoded = lm["eval_attention"].map(decoded_attention)
    if decoded.isna().all():
        return []
    lm = _final_rows(lm, ["model", "train_attention", "eval_attention", "seed"])
    lm = lm.assign(
        rounds=lm["eval_attention"].map(lambda a: label(decoded_attention(a) or a)),
        how=lm["eval_attention"].map(
            lambda a: "decoding" if decoded_attention(a) else "full forward"
        ),
        trained=lm["model"].astype(str) + " · trained " + lm["train_attention"].map(label),
    )
    lm = lm[lm["rounds"].str.startswith("LSH-")]
    lm = lm.assign(column=lm["rounds"] + " " + lm["how"])
    table = lm.pivot_table(
        index="trained", columns="column", values="bits_per_byte", aggfunc="mean"
    )
    order = sorted(table.columns, key=lambda c: (int(c.split()[0][4:]), "decoding" in c))
    table = table[order]
    table.columns.name = None
    seeds = int(lm["seed"].nunique()) if "seed" in lm else 1
    return [
        Table(
            table.map(fmt),
            "Byte LM, bits per byte evaluated by the full forward and by teacher-forced "
            "incremental decoding (each byte one step, with the decoding cache's key rule), "
            f"per number of hash rounds; mean of {seeds} seed(s).",
        )
    ]


def _heatmaps(
    matrices: dict[str, pd.DataFrame],
    spreads: dict[str, pd.DataFrame],
    seeds: dict[str, pd.DataFrame],
) -> plt.Figure:
    """Mean accuracy as colour; each cell's text gives the mean and, over several seeds,
    the standard deviation; each title the number of seeds."""
    panels = [
        (
            f"ours{', ' + v if v else ''}\n{seeds_label(seeds[v]).split(' (')[0]}",
            m,
            _with_spread(m, spreads[v]),
        )
        for v, m in matrices.items()
    ]
    paper = pd.DataFrame(TABLE2, index=list(TABLE2_EVAL)).T
    panels.append(("Reformer Table 2\n(published)", paper, paper.map(lambda v: f"{v:.1f}")))
    figure, axes = plt.subplots(
        1, len(panels), squeeze=False, figsize=(PANEL_SIZE[0] * len(panels), PANEL_SIZE[1] * 1.1)
    )
    for ax, (title, matrix, text) in zip(axes[0], panels, strict=True):
        sns.heatmap(
            matrix.astype(float),
            ax=ax,
            annot=text,
            fmt="",
            vmin=0,
            vmax=100,
            cmap="viridis",
            cbar=False,
            annot_kws={"fontsize": 5},
        )
        ax.set_title(title)
        ax.set_xlabel("evaluated with")
        ax.set_ylabel("trained with")
    figure.tight_layout()
    return figure


def _bits_per_byte(ctx: ReportContext, rows: pd.DataFrame) -> list[Block]:
    """Validation bits per byte: curves over steps where several were evaluated, else bars.

    Colour is the model (as in every figure), the marker the attention it was evaluated
    with; the table lists each (model, evaluation) at its final step.
    """
    lm = rows[rows["bits_per_byte"].notna()]
    if lm.empty:
        return [Note("No bits-per-byte rows: language-model curves omitted.")]

    def tag(column: str, word: str) -> pd.Series:
        if column not in lm:
            return pd.Series("", index=lm.index)
        return lm[column].map(lambda a: "" if pd.isna(a) else f" · {word} {label(a)}")

    # Two runs of one model (say LSH-2- and LSH-4-trained reformer-lsh-rev) are separate
    # series: the training attention is part of the label.
    trained, evaluated = tag("train_attention", "trained"), tag("eval_attention", "eval")
    # Runs of different lengths (results of several sizes under one folder) stay apart too.
    runs = _run_length(lm, " · {:g} steps")
    if "seed" in lm and lm["seed"].nunique() > 1:  # each seed's curve is its own line
        runs = runs + lm["seed"].map(lambda s: f" · seed {s:g}")
    lm = lm.assign(evaluated=evaluated, series=lm["model"].astype(str) + trained + evaluated + runs)
    curves = lm.groupby("series")["step"].nunique().max() > 1
    style = "series" if curves else ("evaluated" if evaluated.ne("").any() else None)
    final = _final_rows(lm, ["series"]).set_index("series").reindex(pd.unique(lm["series"]))
    if curves:
        # Curves are the training attention's; other evaluations are in the table only.
        own = lm[lm["eval_attention"] == lm["train_attention"]] if "eval_attention" in lm else lm
        panel = Panel(
            data=own,
            x="step",
            y="bits_per_byte",
            hue="model",
            style=style,
            title="validation",
            xlabel="training step",
            ylabel="bits per byte",
            logx=None,
            logy=False,
        )
    else:

        def bars(ax) -> None:
            ax.bar(
                range(len(final)),
                final["bits_per_byte"],
                color=[ctx.palette.colours[str(m)] for m in final["model"]],
            )
            ax.set_xticks(range(len(final)), final.index, rotation=30, ha="right")
            ax.set_ylabel("bits per byte")

        panel = Panel(
            data=lm,
            x="series",
            y="bits_per_byte",
            hue="model",
            title="validation (final step)",
            custom=bars,
        )
    table = pd.DataFrame(
        {"bits per byte": final["bits_per_byte"].map(fmt), "step": final["step"].map(fmt)}
    )
    baseline = final.loc[final["model"].astype(str).str.startswith("transformer"), "bits_per_byte"]
    if len(baseline) == 1:
        table["vs transformer"] = (final["bits_per_byte"] / baseline.iloc[0] - 1).map(
            lambda r: f"{r:+.1%}"
        )
    return [
        Paragraph(
            "Byte-level language model: validation bits per byte"
            + (" along training." if curves else " at the end of training.")
        ),
        ctx.save(
            draw_panels([[panel]], ctx.palette),
            "quality_bits_per_byte",
            "Byte-level LM: validation bits per byte",
            "Bits per byte (lower is better); colour = model, marker = attention used "
            "at evaluation.",
            ctx.commands("quality"),
            ("quality",),
        ),
        Table(
            table,
            f"Final validation bits per byte (the Reformer is expected within "
            f"{paper.BPB_TOLERANCE:.0%} of the Transformer at equal steps).",
        ),
    ]
