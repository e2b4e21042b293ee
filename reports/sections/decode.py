"""Generation: per-token latency and memory against context (the decode suite).

Two log-log panels, one line per decoder at batch 1: the median latency of one generated
token, and the peak memory of prefill and decoding together. The table gives every
measured point, batches above 1 too (tokens/s per sequence and in total); the paragraph
the LSH cache's flatness (longest context over 4K), its ratio to the key/value cache at
the longest context, and where the two cross (log-log interpolation,
suites.rows.crossover, as in the time section), all at batch 1.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.ticker import FuncFormatter

from reports.context import ReportContext
from reports.render.document import Block, Paragraph, Table, fmt
from suites.rows.decode_findings import decode_findings

DECODERS = {
    "lsh": "Reformer, LSH cache",
    "kv": "Transformer (SDPA), KV cache",
    "none": "Transformer (SDPA), no cache",
    "hf": "HF Reformer, bucket cache",
}
# Four decoders, four hues a reader tells apart (colour-blind safe, Okabe-Ito).
COLOURS = {"lsh": "#0072B2", "kv": "#D55E00", "none": "#999999", "hf": "#009E73"}


def build_decode(ctx: ReportContext) -> list[Block] | None:
    rows = ctx.ok("decode")
    if rows.empty or "cache" not in rows:
        return None
    every = with_batch(rows.assign(decoder=rows["cache"].map(DECODERS).fillna(rows["model"])))
    rows = every[every["batch"] == 1]  # the figure and findings: one sequence at a time
    caches = [c for c in DECODERS if c in set(rows["cache"])]
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for axis, column, ylabel in (
        (axes[0], "t_median_ms", "ms per generated token (median)"),
        (axes[1], "peak_mib", "peak memory (MiB)"),
    ):
        for cache in caches:
            line = rows[rows["cache"] == cache].sort_values("seq_len")
            axis.plot(
                line["seq_len"],
                line[column],
                marker="o",
                label=DECODERS[cache],
                color=COLOURS[cache],
            )
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        axis.xaxis.set_major_formatter(FuncFormatter(_tokens))
        axis.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axis.yaxis.set_minor_formatter(FuncFormatter(_two_and_five))
        axis.set_xlabel("context length (tokens)")
        axis.set_ylabel(ylabel)
        axis.grid(True, which="both", alpha=0.3)
    axes[0].set_title("Latency of one token")
    axes[1].set_title("Peak memory, prefill + decoding")
    axes[1].legend(fontsize="small")
    mode = ", ".join(sorted(set(rows["mode"].dropna().astype(str)))) if "mode" in rows else ""
    caption = (
        "Greedy decoding, batch 1, per-token median over the generated tokens; the memory "
        "peak is mostly the prompt's forward (prefill)"
        + (f"; grid mode: {mode}" if mode else "")
        + ". Both axes logarithmic."
    )
    blocks: list[Block] = [
        ctx.save(figure, "decode", "Generation against context", caption, ctx.commands("decode"))
    ]
    blocks.append(Paragraph(_targets(rows)))
    table = every.sort_values(["seq_len", "batch", "decoder"])[
        [
            "seq_len",
            "batch",
            "decoder",
            "t_median_ms",
            "t_p90_ms",
            "prefill_ms",
            "tokens_per_s_per_seq",
            "tokens_per_s",
            "cache_bytes_per_token",
            "peak_mib",
        ]
    ]
    table = table.rename(
        columns={
            "seq_len": "context",
            "t_median_ms": "per step (ms)",
            "tokens_per_s_per_seq": "tokens/s per sequence",
            "tokens_per_s": "tokens/s total",
            "t_p90_ms": "p90 (ms)",
            "prefill_ms": "prefill (ms)",
            "cache_bytes_per_token": "cache B/position",
            "peak_mib": "peak (MiB)",
        }
    )
    blocks.append(Table(table.map(fmt), caption="Every measured decode point.", index=False))
    return blocks


def with_batch(rows: pd.DataFrame) -> pd.DataFrame:
    """Decode rows with ``batch`` (1 where missing) and ``tokens_per_s_per_seq`` (rows from
    before that field: the batch's total over its size) filled."""
    every = rows.assign(batch=rows["batch"].fillna(1).astype(int) if "batch" in rows else 1)
    per_seq = every["tokens_per_s"] / every["batch"]
    if "tokens_per_s_per_seq" in every:
        per_seq = every["tokens_per_s_per_seq"].fillna(per_seq)
    return every.assign(tokens_per_s_per_seq=per_seq)


def targets(rows: pd.DataFrame) -> str:
    """The findings paragraph of batch-1 decode rows (suites.rows.decode_findings)."""
    return _targets(rows)


def _two_and_five(value: float, _position: object) -> str:
    """Minor log ticks labelled at 2 and 5 times a power of ten only, so none overlap."""
    mantissa = round(value / 10 ** math.floor(math.log10(value)), 6)
    return f"{value:g}" if mantissa in (2.0, 5.0) else ""


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

    return "; ".join(decode_findings(curve("lsh"), curve("kv"), curve("hf"))) + "."
