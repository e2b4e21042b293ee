"""What the harness runs: a :class:`Point` is one measurement, run in a child process by its
``runner`` (suites.harness.suite holds the grid a suite makes of them).
"""

from __future__ import annotations

import hashlib
import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from suites.rows.names import schema_1_names
from suites.rows.samples import MIN_SAMPLES

if TYPE_CHECKING:
    from reformer.config import ReformerConfig
    from suites.harness.spec import Workload

DEFAULT_RUNNER = "suites.harness.measure:measure_step"
# The config fields that make two points of one family: everything but length and batch
# (the time suite keeps tokens per batch fixed, so batch falls as length grows).
LENGTH_FIELDS = ("seq_len", "batch")


@dataclass(kw_only=True)
class Point:
    """One measurement: the fields that identify its result row and how to measure it.

    ``params`` holds the row fields that say which point this is (model, phase, seq_len,
    d_model, ... device); for a model point they derive from ``config`` and ``harness``
    (suites.harness.spec.model_fields, built by suites.grids._common). ``runner`` is
    "module:function", called in the child as ``function(params, options)`` and returning
    row fields; a model point's runner finds its config and harness in ``options``.
    """

    params: dict[str, Any]
    config: ReformerConfig | None = None  # model points: the model the runner builds
    workload: Workload | None = None  # model points: how it is run
    runner: str = DEFAULT_RUNNER
    timeout_s: float = 600.0
    min_run_time: float = 0.5  # seconds of timed calls for Timer.blocked_autorange
    # Calls timed at the least, whatever min_run_time gives (suites.rows.samples says why).
    min_samples: int = MIN_SAMPLES
    # Not config: switches for the runner (e.g. memory_first), and ``skip_reason``, which
    # writes the point as skipped with that note instead of running it.
    options: dict[str, Any] = field(default_factory=dict)
    # Points with the same ``serial`` never run at the same time, whatever the executor:
    # they share state on disk (a quality run's points share the checkpoint its first
    # point trains). None: the point's family (its params less length) decides.
    serial: str | None = None
    # What the point costs, for executors that order waiting points (a cost proxy in any
    # unit shared by the suite's points); None: its length.
    work: float | None = None

    def with_threads(self, threads: int) -> Point:
        """The same point at a fixed torch thread count (part of its identity)."""
        workload = None if self.workload is None else replace(self.workload, num_threads=threads)
        return replace(self, params={**self.params, "num_threads": threads}, workload=workload)

    def runner_options(self) -> dict[str, Any]:
        """What the child's runner gets beside params: timing, switches, config, workload."""
        model = {} if self.config is None else {"config": self.config, "workload": self.workload}
        timing = {"min_run_time": self.min_run_time, "min_samples": self.min_samples}
        return {**timing, **self.options, **model}

    def cost(self) -> float:
        """:attr:`work`, else the point's length (longer points cost more)."""
        return float(self.seq_len if self.work is None else self.work)

    @property
    def seq_len(self) -> int:
        return int(self.params.get("seq_len") or 0)

    def key(self, suite: str, hardware: str) -> str:
        """Stable identity for resume: a hash of suite, every config field and the hardware
        (names spelled as schema 1 spelled them, so older rows still match)."""
        identity = json.dumps(
            {"suite": suite, "hardware": hardware, **schema_1_names(self.params)},
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(identity.encode()).hexdigest()[:20]

    def family(self) -> str:
        """Points that differ only in length, or that share ``serial``: a family runs one
        point at a time, and after one runs out of memory, its longer ones skip."""
        if self.serial is not None:
            return json.dumps({"serial": self.serial})
        rest = {k: v for k, v in self.params.items() if k not in LENGTH_FIELDS}
        return json.dumps(rest, sort_keys=True, default=str)


def resolve_runner(runner: str) -> Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]:
    module_name, _, function_name = runner.partition(":")
    if not function_name:
        raise ValueError(f"runner {runner!r} must be 'module:function'")
    return getattr(importlib.import_module(module_name), function_name)
