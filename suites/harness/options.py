"""The sweep's options: one frozen object, built once from the command line
(``suites.run``) and handed down to the sweep, the executor and the rows.

A field here is a choice about *how* a suite's grid is measured, never *what* it is (that
is ``GridContext``: device, mode, data, seeds). Adding a flag means adding a field here,
reading it in ``suites.run.options_from_args`` and using it where it applies: no layer
between repeats it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from suites.harness.executors import EXECUTORS
from suites.rows.store import DEFAULT_OUT


@dataclass(frozen=True, kw_only=True)
class SweepOptions:
    out_dir: Path = DEFAULT_OUT  # the results folder (runs/ by default, ignored by git)
    fresh: bool = False  # start a new results file instead of resuming the newest
    # GiB per point; None: the suite's own cap, else the harness default for the device
    # (suites.harness.sweep.memory_cap)
    max_memory_gb: float | None = None
    timeout_s: float | None = None  # seconds per point; None: each point's own
    # torch threads in every point (part of the point's key); None: torch's default
    threads: int | None = None
    progress: bool = True  # a progress bar on a terminal, one line per point elsewhere
    executor: str = "local"  # "local" (here, one point at a time) or "ray"
    # executor "local": points measured side by side (suites whose figures are not times)
    jobs: int = 1
    ray_address: str | None = None  # --executor ray: the cluster to join; None: start one
    per_hardware: bool = False  # --executor ray: each point once per hardware kind
    lengths: tuple[int, ...] | None = None  # only the grid's points of these lengths
    # quality suite: only the points of models trained with these attentions
    train: tuple[str, ...] | None = None
    # the command line every row records; None: this process's sys.argv
    argv: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise ValueError(f"executor must be one of {EXECUTORS}; got {self.executor!r}")
        if self.executor != "ray":
            for name in ("ray_address", "per_hardware"):
                if getattr(self, name):
                    raise ValueError(f"{name} applies only to executor 'ray'")
        for name in ("max_memory_gb", "timeout_s"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be > 0 or None; got {value!r}")
        if not isinstance(self.jobs, int) or self.jobs < 1:
            raise ValueError(f"jobs must be an int >= 1; got {self.jobs!r}")
        if self.jobs > 1 and self.executor != "local":
            raise ValueError(
                f"jobs={self.jobs} applies only to executor 'local' (Ray runs a point per slot)"
            )
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1 or None; got {self.threads!r}")
