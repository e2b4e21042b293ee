"""A report as a list of blocks, rendered once to Markdown (here) and once to HTML (html.py).

Sections build blocks, never strings of a given format, so report.md and report.html
always say the same thing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    text: str  # plain text; `backticks` mark code


@dataclass(frozen=True)
class Note:
    text: str  # a one-line remark, e.g. why a section is omitted


@dataclass(frozen=True)
class Code:
    text: str


@dataclass(frozen=True)
class Table:
    frame: pd.DataFrame  # cells already formatted as text
    caption: str = ""
    index: bool = True


@dataclass(frozen=True)
class Figure:
    stem: str  # figures/<stem>.png and figures/<stem>.svg
    caption: str
    commands: tuple[str, ...]  # shell commands that reproduce the figure


Block = Heading | Paragraph | Note | Code | Table | Figure


def fmt(value: object, digits: int = 3) -> str:
    """A number with ``digits`` significant digits; '' for missing; text unchanged."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    if value == 0:
        return "0"
    if float(value).is_integer():
        return str(int(value))
    decimals = max(digits - 1 - math.floor(math.log10(abs(value))), 0)
    return f"{value:.{decimals}f}"


def render_markdown(title: str, blocks: list[Block]) -> str:
    parts = [f"# {title}"]
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"{'#' * block.level} {block.text}")
        elif isinstance(block, Paragraph):
            parts.append(block.text)
        elif isinstance(block, Note):
            parts.append(f"> {block.text}")
        elif isinstance(block, Code):
            parts.append(f"```\n{block.text}\n```")
        elif isinstance(block, Table):
            table = block.frame.to_markdown(index=block.index, disable_numparse=True)
            parts.append(f"{table}\n\n*{block.caption}*" if block.caption else table)
        elif isinstance(block, Figure):
            commands = "\n".join(block.commands)
            parts.append(
                f"![{block.caption}](figures/{block.stem}.png)\n\n*{block.caption}*\n\n"
                f"Reproduce:\n\n```\n{commands}\n```"
            )
    return "\n\n".join(parts) + "\n"
