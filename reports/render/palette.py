"""One colour and one legend position per series label, shared by every figure of a report.

Known model names and the ``LSH-n`` series of the time figure have fixed colours, so a
model looks the same in every report. Other labels get the next free colour: first all
model names of the report, sorted, then any label a later figure introduces, so a label
keeps one colour throughout the report.
"""

from __future__ import annotations

from collections.abc import Iterable

import seaborn as sns

from suites.rows import names

Colour = tuple[float, float, float]

_CB = sns.color_palette("colorblind", 10)
_LSH_SHADES = sns.color_palette("Greens", 7)[2:]
FIXED: dict[str, Colour] = {
    "transformer-full": _CB[0],
    "transformer-sdpa": _CB[9],
    "reformer-full": _CB[4],
    "reformer-full-rev": _CB[6],
    "reformer-lsh": _CB[5],
    "reformer-lsh-rev": _CB[3],
    "attn-full": _CB[0],
    "attn-sdpa": _CB[9],
    "attn-lsh": _CB[3],
    "attn-local": _CB[8],
    "reformer-local": _CB[8],
    "reformer-local-rev": _CB[8],
    "Local": _CB[8],
    "peer-reformer-pytorch": _CB[2],
    "peer-hf": _CB[1],
    "full": _CB[0],
    "Full": _CB[0],
    "sdpa": _CB[9],
    "LSH-1": _LSH_SHADES[0],
    "LSH-2": _LSH_SHADES[1],
    "LSH-4": _LSH_SHADES[2],
    "LSH-8": _LSH_SHADES[3],
    "LSH-16": _LSH_SHADES[4],
}
_SPARE = [_CB[7]]  # _CB[8] is local attention's
_DISTINCT = [_CB[i] for i in (0, 3, 2, 4, 1)]
_EXTRA = sns.husl_palette(20, l=0.55)


def lsh_label(n_hashes: float | int) -> str:
    """Series label for LSH attention with ``n_hashes`` rounds, as in the paper's Fig. 5."""
    return names.label(names.lsh_name(int(n_hashes)))


class Palette:
    """Label -> colour, with a legend order: fixed labels first, then first come."""

    def __init__(self, labels: Iterable[str] = ()) -> None:
        self.colours: dict[str, Colour] = {}
        self._order: list[str] = []
        self.ensure(labels)

    @classmethod
    def distinct(cls, labels: Iterable[str]) -> Palette:
        """A palette of its own for a few labels that are not models (machine kinds),
        in the most distinct colour-blind-safe colours, in ``labels``' order."""
        palette = cls()
        for label, colour in zip(labels, _DISTINCT * 4, strict=False):
            palette.colours[str(label)] = colour
            palette._order.append(str(label))
        return palette

    def ensure(self, labels: Iterable[str]) -> None:
        """Give every new label a colour; unknown ones in sorted order."""
        new = {str(label) for label in labels} - set(self.colours)
        for label in sorted(new, key=lambda name: (name not in FIXED, name)):
            self.colours[label] = FIXED.get(label) or self._next_colour()
            self._order.append(label)

    def _next_colour(self) -> Colour:
        used = set(self.colours.values())
        for colour in _SPARE:
            if colour not in used:
                return colour
        beyond_spares = sum(label not in FIXED for label in self.colours) - len(_SPARE)
        return _EXTRA[beyond_spares % len(_EXTRA)]

    @property
    def order(self) -> tuple[str, ...]:
        fixed = [label for label in FIXED if label in self.colours]
        return (*fixed, *(label for label in self._order if label not in FIXED))

    def hue_order(self, labels: Iterable[str]) -> list[str]:
        """The labels present, in the report-wide legend order (new ones added first)."""
        present = {str(label) for label in labels}
        self.ensure(present)
        return [label for label in self.order if label in present]
