"""Figure 6: peer implementations, and the exact baselines, normalised to our LSH per length;
and the model race: whole training steps of our ReformerLM, the peers' Reformer LMs and the
SDPA Transformer (phase ``train_step``), drawn as a figure of their own in seconds and MiB.

A peer row is one whose model starts with ``peer-`` (suites.rows.names); every row records an
``impl_version``, ours the project's own, so that field cannot tell them apart. Our reference is
our own LSH attention in the same suite; every other point (peers, and our exact SDPA or
full baselines) is divided by our LSH point of the same shape (same phase, length, batch,
widths, dtype, as far as both rows record them), so 2.0 means twice our time or memory.
"""

from __future__ import annotations

import pandas as pd

from reports.context import ReportContext
from reports.render.document import Block, Note, Paragraph, Table, fmt
from reports.render.palette import lsh_label
from reports.render.plotting import Panel, draw_panels, ordered, phase_title
from suites.rows.names import PEER_PREFIX
from suites.rows.schema import PHASES

SHAPE = (
    "phase",
    "seq_len",
    "batch",
    "d_model",
    "n_heads",
    "n_layers",
    "d_ff",
    "n_hashes",
    "bucket_size",
    "causal",
    "dtype",
)


def is_peer(rows: pd.DataFrame) -> pd.Series:
    return rows["model"].astype(str).str.startswith(PEER_PREFIX)


def peer_ratios(rows: pd.DataFrame) -> pd.DataFrame:
    """Every non-reference point joined to our LSH point of the same shape, with
    time_ratio and memory_ratio; ``ours`` names the reference."""
    rows = rows[rows["status"] == "ok"]
    reference = ~is_peer(rows) & (rows["attention"] == "lsh")
    mine, others = rows[reference], rows[~reference]
    if mine.empty or others.empty:
        return pd.DataFrame()
    keys = [c for c in SHAPE if mine[c].notna().all() and others[c].notna().all()]
    several = mine["n_hashes"].nunique() > 1
    ours = mine.assign(
        ours=[
            f"{m} {lsh_label(n)}" if several else m
            for m, n in zip(mine["model"], mine["n_hashes"], strict=True)
        ]
    )
    ours = ours[[*keys, "ours", "t_median_ms", "peak_mib"]].rename(
        columns={"t_median_ms": "ours_ms", "peak_mib": "ours_mib"}
    )
    joined = others.merge(ours, on=keys, how="inner")
    return joined.assign(
        time_ratio=joined["t_median_ms"] / joined["ours_ms"],
        memory_ratio=joined["peak_mib"] / joined["ours_mib"],
    )


def build_peers(ctx: ReportContext) -> list[Block] | None:
    rows = ctx.suite("peers")
    if rows.empty:
        return None
    joined = peer_ratios(rows)
    if joined.empty:
        return [
            Note(
                "Peers: results exist but no point has an ok point of our LSH attention "
                "with the same shape, so nothing can be normalised."
            )
        ]
    race = rows[(rows["status"] == "ok") & (rows["phase"] == "train_step")]
    joined = joined[joined["phase"] != "train_step"]
    grid = []
    for reference in ordered(joined["ours"]):
        for phase in ordered(joined["phase"], PHASES):
            cell = joined[(joined["ours"] == reference) & (joined["phase"] == phase)]
            panels = [
                Panel(
                    data=cell[cell[ratio] > 0],
                    x="seq_len",
                    y=ratio,
                    hue="model",
                    title=phase_title(phase, f"against {reference}"),
                    xlabel="sequence length L",
                    ylabel=label,
                    logx=2,
                    hline=(1.0, "ours = 1"),
                )
                for ratio, label in (
                    ("time_ratio", "time / ours"),
                    ("memory_ratio", "peak memory / ours"),
                )
                if (cell[ratio] > 0).any()
            ]
            if panels:
                grid.append(panels)
    if not grid:
        return _race(ctx, race) or None
    table = pd.DataFrame(
        {
            "model": joined["model"],
            "impl": joined["impl"].fillna(""),
            "impl_version": joined["impl_version"].fillna(""),
            "ours": joined["ours"],
            "phase": joined["phase"],
            "L": joined["seq_len"].map(fmt),
            "time / ours": joined["time_ratio"].map(fmt),
            "memory / ours": joined["memory_ratio"].map(fmt),
        }
    )
    return [
        Paragraph(
            "Peer implementations (and our exact baselines) run through the same "
            "harness, each point divided by our LSH attention at the same shape; above "
            "1 the other is slower or hungrier."
        ),
        ctx.save(
            draw_panels(grid, ctx.palette),
            "peers_normalised",
            "Peer implementations relative to our LSH attention",
            "Peers normalised to our LSH attention per length (dotted line: ours).",
            ctx.commands("peers"),
            ("peers",),
        ),
        Table(table, "Peer / ours ratios.", index=False),
        *_race(ctx, race),
    ]


def _race(ctx: ReportContext, race: pd.DataFrame) -> list[Block]:
    """The model race: time and peak of each whole training step against L, and a table
    with each model's time and peak over ours at the same length."""
    if race.empty:
        return []
    race = race.assign(t_s=race["t_median_ms"] / 1e3)
    panels = [
        Panel(
            data=race,
            x="seq_len",
            y=column,
            hue="model",
            title=title,
            xlabel="sequence length L",
            ylabel=label,
            logx=2,
            logy=True,
        )
        for column, title, label in (
            ("t_s", "whole training step, batch 1", "time per step (s)"),
            ("peak_mib", "peak memory of the step", "peak above start (MiB)"),
        )
    ]
    ours = race[~is_peer(race) & (race["attention"] == "lsh")].set_index("seq_len")
    table = pd.DataFrame(
        {
            "model": race["model"],
            "impl": race["impl"].fillna(""),
            "L": race["seq_len"].map(fmt),
            "time (s)": race["t_s"].map(fmt),
            "peak (MiB)": race["peak_mib"].map(fmt),
            "time / ours": [
                fmt(t / ours.at[n, "t_median_ms"]) if n in ours.index else ""
                for t, n in zip(race["t_median_ms"], race["seq_len"], strict=True)
            ],
            "peak / ours": [
                fmt(m / ours.at[n, "peak_mib"]) if n in ours.index else ""
                for m, n in zip(race["peak_mib"], race["seq_len"], strict=True)
            ],
        }
    )
    return [
        Paragraph(
            "The model race: one whole training step (forward, backward of the LM loss, "
            "AdamW) of each library's Reformer language model at the same shapes (6 layers, "
            "d_model 256, 4 heads, d_ff 1024, LSH-4, chunk 64, reversible, axial "
            "positions), and of the SDPA Transformer; what a peer cannot match is listed "
            "in baselines/peer_models.py."
        ),
        ctx.save(
            draw_panels([panels], ctx.palette),
            "peers_model_race",
            "Whole-model training step against the peers",
            "Whole training step of each Reformer LM and the SDPA Transformer, batch 1.",
            ctx.commands("peers"),
            ("peers",),
        ),
        Table(table, "Model race: whole training steps and their ratio to ours.", index=False),
    ]
