"""What every report section gets: the rows of one hardware, where to write, how to draw.

A section is a titled function from a :class:`ReportContext` to blocks, or to ``None``
when its data is missing; the report then prints a one-line note instead (the registry:
reports.sections.SECTIONS).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass
from itertools import product
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import pandas as pd

from reports.render.document import Block, Figure
from reports.render.files import write_whole
from reports.render.palette import Palette


@dataclass
class ReportContext:
    rows: pd.DataFrame  # newest row per measured point, one hardware
    history: pd.DataFrame  # CI perf history rows; may be empty
    out_dir: Path  # docs/reports/<theme>_<hardware>_<date>/
    palette: Palette
    results_arg: str  # --results as the user gave it, for the reproduce commands
    build_command: str  # the reports.build command line that made this report
    dpi: int = 300

    def suite(self, name: str) -> pd.DataFrame:
        return self.rows[self.rows["suite"] == name]

    def ok(self, name: str) -> pd.DataFrame:
        rows = self.suite(name)
        return rows[rows["status"] == "ok"]

    def commands(self, *suites: str) -> tuple[str, ...]:
        """Commands that re-measure ``suites`` on this hardware and rebuild the report.

        Rows carry the command line that made them (``argv``), quoted as it was; rows from
        before ``argv`` existed get the suite's CLI spelt out from their device, grid
        ``mode`` (quick/paper, where recorded), scale budget and the results folder.
        """
        lines: list[str] = []
        for name in suites:
            rows = self.suite(name)
            argvs = rows["argv"] if "argv" in rows else pd.Series(None, index=rows.index)
            given = argvs.map(lambda argv: isinstance(argv, list | tuple))
            recorded = sorted({shlex.join(argv) for argv in argvs[given]})
            rows = rows[~given]
            lines.extend(recorded)
            if recorded and rows.empty:
                continue
            devices = sorted({str(d).split(":")[0] for d in rows["device"].dropna()}) or [""]
            modes = sorted(set(rows["mode"].dropna().astype(str))) if "mode" in rows else []
            budgets = (
                sorted(set(rows["memory_budget_gb"].dropna()))
                if (name == "scale" and "memory_budget_gb" in rows)
                else []
            )
            for device, mode, budget in product(devices, modes or [""], budgets or [None]):
                line = f"python -m suites.run {name}" + (f" --device {device}" if device else "")
                if mode in ("quick", "paper"):
                    line += f" --{mode}"
                if budget is not None:
                    line += f" --memory-budget-gb {budget:g}"
                # Into the folder this report reads (a plain run writes runs/ instead).
                line += f" --out {shlex.quote(self.results_arg)}"
                lines.append(line)
        return (*dict.fromkeys(lines), self.build_command)

    def grid_modes(self, *suites: str) -> set[str]:
        """The grids (``quick``, ``default``, ``paper``) the suites' rows come from."""
        modes: set[str] = set()
        for name in suites:
            rows = self.suite(name)
            if "mode" in rows:
                modes |= set(rows["mode"].dropna().astype(str))
        return modes

    def grid_note(self, *suites: str) -> str:
        """Which grid the suites' rows come from, for a caption: a reader must not take a
        smoke grid's numbers for measurements."""
        modes = self.grid_modes(*suites)
        if not modes:
            return ""
        text = "Grid: " + ", ".join(sorted(modes)) + "."
        if "quick" in modes:
            text += (
                " The quick grid is a smoke run of tiny models on one thread: its numbers "
                "check that the code runs and say nothing about speed or memory."
            )
        return text

    def save(
        self,
        figure: plt.Figure,
        stem: str,
        title: str,
        caption: str,
        commands: tuple[str, ...],
        suites: tuple[str, ...] = (),
    ) -> Figure:
        """Title the figure, write figures/<stem>.png (at ``dpi``) and .svg, close it, and
        return its block, its caption ending with the grid of ``suites``' rows. Every
        figure carries its title, so a PNG read alone says what it shows."""
        caption = " ".join(part for part in (caption, self.grid_note(*suites)) if part)
        modes = self.grid_modes(*suites)
        if "quick" in modes:  # said on the image too, which is often read without the report
            which = (
                "--quick smoke grid" if modes == {"quick"} else "includes --quick smoke-grid rows"
            )
            title += f"\n({which}: tiny models, those numbers mean nothing)"
        figure.suptitle(title, y=1.0, va="bottom", fontsize="large")
        folder = self.out_dir / "figures"
        folder.mkdir(parents=True, exist_ok=True)
        try:
            write_whole(
                folder / f"{stem}.png",
                lambda target: figure.savefig(
                    target, dpi=self.dpi, bbox_inches="tight", format="png"
                ),
            )
            # No date, and element ids from a fixed salt: the same figure, the same bytes.
            with matplotlib.rc_context({"svg.hashsalt": stem}):
                write_whole(
                    folder / f"{stem}.svg",
                    lambda target: figure.savefig(
                        target, bbox_inches="tight", metadata={"Date": None}, format="svg"
                    ),
                )
        finally:
            plt.close(figure)
        return Figure(stem=stem, caption=caption, commands=commands)


@dataclass(frozen=True)
class Section:
    key: str
    title: str
    needs: str  # the data it draws on, named in the note when that data is missing
    build: Callable[[ReportContext], list[Block] | None]
    # The suites whose runs it draws, when not just the suite named by ``key``: the report
    # says under the title when any of their runs measured older model code.
    draws: tuple[str, ...] = ()

    def suites(self) -> tuple[str, ...]:
        return self.draws or (self.key,)
