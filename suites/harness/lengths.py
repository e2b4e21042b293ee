"""``--lengths``: run only the points of a grid at some sequence lengths (and the quality
suite's ``--train``: only the points of some trained models).

Lengths are written as integers (1048576), powers of two (2^20) or with a binary suffix
(1M = 2^20, 64K = 2^16).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from suites.harness.points import Point

_SUFFIXES = {"": 1, "K": 2**10, "M": 2**20}
_FORM = "an integer (1048576), a power of two (2^20) or a K/M multiple (1M, 64K)"


def parse_length(text: str) -> int:
    """'1048576', '2^20', '2**20' or '1M' -> 1048576; ValueError naming the form otherwise."""
    value = text.strip()
    power = re.fullmatch(r"2\s*(?:\^|\*\*)\s*(\d+)", value)
    if power:
        length = 2 ** int(power.group(1))
    else:
        match = re.fullmatch(r"(\d+)\s*([KkMm]?)", value)
        if not match:
            raise ValueError(f"--lengths: {text!r} is not a length; write {_FORM}")
        length = int(match.group(1)) * _SUFFIXES[match.group(2).upper()]
    if length < 1:
        raise ValueError(f"--lengths: {text!r} must be a positive length")
    return length


def parse_lengths(text: str) -> list[int]:
    """A comma-separated list of lengths (see :func:`parse_length`)."""
    lengths = [parse_length(part) for part in text.split(",") if part.strip()]
    if not lengths:
        raise ValueError(f"--lengths {text!r}: give at least one length, {_FORM}")
    return lengths


def lengths_argument(text: str) -> list[int]:
    """argparse ``type=`` for --lengths: its own message instead of argparse's generic one."""
    import argparse

    try:
        return parse_lengths(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def select_trained(points: list[Point], train: Sequence[str] | None) -> list[Point]:
    """The points of models trained with one of the attentions ``train`` (the quality
    suite's ``--train``; all points for None). Raises ValueError naming the flag and the
    training attentions the grid has if one matches no point."""
    if train is None:
        return points
    available = sorted({str(p.params.get("train_attention")) for p in points} - {"None"})
    missing = [name for name in train if name not in available]
    if missing:
        raise ValueError(
            f"--train {','.join(missing)}: no model of this grid is trained with that; "
            f"allowed: {available}"
        )
    return [point for point in points if point.params.get("train_attention") in train]


def select_lengths(points: list[Point], lengths: Sequence[int] | None) -> list[Point]:
    """The points whose seq_len is one of ``lengths`` (all of them for None).

    Raises ValueError naming the flag and the lengths the grid has if a requested length
    matches no point.
    """
    if lengths is None:
        return points
    available = sorted({point.seq_len for point in points})
    missing = [length for length in lengths if length not in available]
    if missing:
        raise ValueError(
            f"--lengths {','.join(map(str, missing))}: no point of this grid has "
            f"that length; allowed: {available} (--paper or --quick change the "
            "grid)"
        )
    return [point for point in points if point.seq_len in lengths]
