"""The record: every suite, in a fixed order, with the flags its committed run uses.

Cheap suites come first, so a session that ends early has committed the most suites; the
two long ones (the 2^20-token step and three quality seeds) come last. ``estimate_s`` is
the wall time used when no run of the entry exists on any machine: measured on the 2-core
development CPUs (the scale figure is one 2^20-token point on an AMD EPYC; quality is one
seed's 2,307 s on an Intel Xeon, times three).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Entry:
    """One suite of the record: ``suite`` run with ``flags`` (after ``--out results``)."""

    suite: str
    flags: tuple[str, ...]
    estimate_s: float
    mode: str = "default"
    seeds: int = 1
    lengths: tuple[int, ...] = ()  # only these sequence lengths (empty: the grid's)
    one_sample: bool = False  # times one call per point on purpose (memory, scale)

    def command(self, out: str, fresh: bool) -> list[str]:
        """The ``python -m suites.run`` command that measures this entry into ``out``."""
        command = ["python", "-m", "suites.run", self.suite, "--out", out, *self.flags]
        return [*command, "--fresh"] if fresh else command


RECORD: tuple[Entry, ...] = (
    Entry("hashes", (), 20),
    Entry("chunks", (), 30),
    Entry("reversible", (), 190),
    Entry("peers", (), 140),
    Entry("time", (), 470),
    Entry("memory", (), 590, one_sample=True),
    Entry("decode", (), 400),
    Entry(
        "scale",
        ("--paper", "--lengths", "1M"),
        730,
        mode="paper",
        lengths=(2**20,),
        one_sample=True,
    ),
    # Two points side by side (one thread each on a 2-core CPU): the byte LMs use a second
    # thread badly, so two of them finish in about the time of one on two threads; the
    # duplication models about break even (suites.harness.executors.side_by_side).
    Entry("quality", ("--seeds", "3", "--jobs", "2"), 3 * 2307, seeds=3),
)
ENTRIES = {entry.suite: entry for entry in RECORD}


def select(names: str | None) -> list[Entry]:
    """The entries named in a comma-separated list, in record order (None: all)."""
    if names is None:
        return list(RECORD)
    wanted = [name.strip() for name in names.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in ENTRIES]
    if unknown or not wanted:
        raise ValueError(
            f"--suites={names!r}: unknown {unknown or 'empty list'}; allowed: " + ", ".join(ENTRIES)
        )
    return [entry for entry in RECORD if entry.suite in wanted]
