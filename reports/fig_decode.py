"""Generation: per-token latency and memory against context (the decode suite).

Two log-log panels, one line per decoder: the median latency of one generated token, and
the peak memory of prefill and decoding together. The table gives every measured point;
the paragraph the LSH cache's flatness (longest context over 4K), its ratio to the
key/value cache at the longest context, and where the two cross (log-log interpolation,
suites.crossover, as in the time section).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.ticker import FuncFormatter

from reports.context import ReportContext
from reports.document import Block, Paragraph, Table, fmt
from suites.crossover import crossovers_between

DECODERS = {
    "lsh": "Reformer, LSH cache",
    "kv": "Transformer (SDPA), KV cache",
    "none": "Transformer (SDPA), no cache",
    "hf": "HF Reformer, bucket cache",
}


def build_decode(ctx: ReportContext) -> list[Block] | None:
    rows = ctx.ok("decode")
    if rows.empty or "cache" not in rows:
        return None
    rows = rows.assign(decoder=rows["cache"].map(DECODERS).fillna(rows["model"]))
    labels = ctx.palette.hue_order(rows["decoder"])
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for axis, column, ylabel in (
        (axes[0], "t_median_ms", "ms per generated token (median)"),
        (axes[1], "peak_mb", "peak memory (MiB)"),
    ):
        for label in labels:
            line = rows[rows["decoder"] == label].sort_values("seq_len")
            axis.plot(
                line["seq_len"],
                line[column],
                marker="o",
                label=label,
                color=ctx.palette.colours[label],
            )
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        axis.xaxis.set_major_formatter(FuncFormatter(_tokens))
        axis.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axis.yaxis.set_minor_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axis.set_xlabel("context length (tokens)")
        axis.set_ylabel(ylabel)
        axis.grid(True, which="both", alpha=0.3)
    axes[0].set_title("Latency of one token")
    axes[1].set_title("Peak memory, prefill + decoding")
    axes[1].legend(fontsize="small")
    mode = ", ".join(sorted(set(rows["mode"].dropna().astype(str)))) if "mode" in rows else ""
    caption = (
        "Greedy decoding, batch 1, per-token median over the generated tokens"
        + (f"; grid mode: {mode}" if mode else "")
        + ". Both axes logarithmic."
    )
    blocks: list[Block] = [
        ctx.save(figure, "decode", "Generation against context", caption, ctx.commands("decode"))
    ]
    blocks.append(Paragraph(_targets(rows)))
    table = rows.sort_values(["seq_len", "decoder"])[
        [
            "seq_len",
            "decoder",
            "t_median_ms",
            "t_p90_ms",
            "prefill_ms",
            "cache_bytes_per_token",
            "peak_mb",
        ]
    ]
    table = table.rename(
        columns={
            "seq_len": "context",
            "t_median_ms": "per token (ms)",
            "t_p90_ms": "p90 (ms)",
            "prefill_ms": "prefill (ms)",
            "cache_bytes_per_token": "cache B/position",
            "peak_mb": "peak (MiB)",
        }
    )
    blocks.append(Table(table.map(fmt), caption="Every measured decode point.", index=False))
    return blocks


def _tokens(value: float, _position: object) -> str:
    """Context tick labels: 512, 1K, 64K, 1M."""
    if value >= 2**20:
        return f"{value / 2**20:g}M"
    return f"{value / 2**10:g}K" if value >= 2**10 else f"{value:g}"


def _targets(rows: pd.DataFrame) -> str:
    def curve(cache: str) -> dict[int, float]:
        part = rows[rows["cache"] == cache]
        return dict(
            zip(part["seq_len"].astype(int), part["t_median_ms"].astype(float), strict=True)
        )

    lsh, kv, hf = curve("lsh"), curve("kv"), curve("hf")
    parts = []
    if lsh:
        longest = max(lsh)
        if 4096 in lsh and longest > 4096:
            parts.append(
                f"LSH per-token latency at {longest} tokens is {lsh[longest] / lsh[4096]:.2f}x "
                "its latency at 4096."
            )
        if longest in kv:
            parts.append(
                f"At {longest} tokens the LSH cache takes {lsh[longest] / kv[longest]:.2f}x the "
                "KV cache's time per token."
            )
    if lsh and kv:
        crossings = crossovers_between(lsh, kv)
        parts += [
            f"The two cross at about {c.seq_len:.0f} tokens; "
            f"{'LSH' if c.lower_after == 'a' else 'the KV cache'} is faster above."
            for c in crossings
        ] or ["The LSH and KV-cache curves do not cross in this grid."]
    parts += [
        f"HF's Reformer takes {hf[n] / lsh[n]:.1f}x our time per token at {n} tokens."
        for n in sorted(set(hf) & set(lsh))
    ]
    return " ".join(parts)
