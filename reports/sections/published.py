"""Published reference numbers, each with its source and hardware.

They are shown in their own tables, next to ours, never drawn as a series among our
measurements: they come from other hardware, batch sizes and code. The report lists them
last (:func:`build_published`).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from reports.context import ReportContext
from reports.render.document import Block, Heading, Note, Table
from suites.rows import paper
from suites.rows.names import label

REFORMER = "Reformer paper (Kitaev, Kaiser, Levskaya, ICLR 2020)"
REFORMER_HARDWARE = "8 GPUs or 8 TPU v3 cores for training (paper sec. 5)"

# Table 2, duplication task (suites.rows.paper), under the report's labels: rows =
# trained with, columns = evaluated with; accuracy in %.
TABLE2_EVAL = tuple(map(label, paper.TABLE2_EVAL))
TABLE2: dict[str, tuple[float, ...]] = {label(k): v for k, v in paper.TABLE2.items()}


@dataclass(frozen=True)
class PublishedTable:
    title: str
    source: str
    hardware: str
    setting: str
    frame: pd.DataFrame

    def text(self) -> pd.DataFrame:
        """Cells as published: no rounding, no padding (0.8 stays 0.8, 118.5 stays 118.5)."""
        return self.frame.map(lambda v: f"{v:g}" if isinstance(v, int | float) else str(v))

    def caption(self) -> str:
        return f"Source: {self.source}. Hardware: {self.hardware}. Setting: {self.setting}."


def table2() -> PublishedTable:
    frame = pd.DataFrame(TABLE2, index=list(TABLE2_EVAL)).T
    frame.index.name = "trained with \\ evaluated with"
    return PublishedTable(
        title="Reformer Table 2: duplication-task accuracy (%)",
        source=f"{REFORMER}, Table 2",
        hardware=REFORMER_HARDWARE,
        setting="1 layer, d_model 256, 4 heads, L = 1024, vocabulary 128",
        frame=frame,
    )


def figure5() -> PublishedTable:
    frame = pd.DataFrame(
        {
            "attention": ["full", "LSH-1", "LSH-2", "LSH-4", "LSH-8"],
            "seconds per step": [
                "0.17 at 1K rising to 3.49 at 32K",
                "≈0.07–0.10",
                "≈0.10–0.15",
                "≈0.16–0.23",
                "≈0.28–0.44",
            ],
            "trend in L": ["grows ~ L (fixed tokens per batch)", "flat", "flat", "flat", "flat"],
        }
    ).set_index("attention")
    return PublishedTable(
        title="Reformer Fig. 5: attention speed, values read off the plot",
        source=f"{REFORMER}, Fig. 5",
        hardware=f"not stated for this figure; {REFORMER_HARDWARE}",
        setting="32K tokens per batch, lengths 1K to 32K",
        frame=frame,
    )


def long_range_arena() -> PublishedTable:
    frame = pd.DataFrame(
        {
            "length": ["1K", "2K", "3K", "4K"],
            "Reformer steps/s": [4.4, 2.2, 1.5, 1.1],
            "Transformer steps/s": [8.1, 4.9, 2.3, 1.4],
            "Reformer memory (GB)": [0.48, 0.99, 1.53, 2.28],
            "Transformer memory (GB)": [0.85, 2.65, 5.51, 9.48],
        }
    ).set_index("length")
    return PublishedTable(
        title="Long Range Arena efficiency benchmark",
        source="Long Range Arena (Tay et al., ICLR 2021)",
        hardware="TPU",
        setting="byte-level text classification, batch 32",
        frame=frame,
    )


def flash_attention() -> PublishedTable:
    frame = pd.DataFrame(
        {
            "length": ["1K", "2K", "4K", "8K"],
            "Reformer fwd+bwd (ms)": [25.9, 52.1, 105.0, 215.0],
            "FlashAttention fwd+bwd (ms)": [2.3, 7.6, 30.1, 118.5],
            "Reformer memory (MB)": [3016, 6033, 12067, 24134],
            "FlashAttention memory (MB)": [209, 418, 836, 1672],
        }
    ).set_index("length")
    return PublishedTable(
        title="FlashAttention benchmark: Reformer attention against FlashAttention",
        source="FlashAttention paper (Dao et al., NeurIPS 2022)",
        hardware="NVIDIA A100",
        setting="attention forward + backward",
        frame=frame,
    )


def published_tables() -> list[PublishedTable]:
    return [table2(), figure5(), long_range_arena(), flash_attention()]


def build_published(ctx: ReportContext) -> list[Block]:
    blocks: list[Block] = [
        Note(
            "Published numbers come from other hardware, batch sizes and "
            "code; they are listed for scale, never drawn among ours."
        )
    ]
    for table in published_tables():
        blocks += [Heading(table.title, level=3), Table(table.text(), table.caption())]
    return blocks
