"""results/ci/baseline.json: the committed ratios the CI ratio gates compare against.

Shape::

    {"schema_version": 2,
     "tolerance": 0.25,              # a ratio fails above baseline * (1 + tolerance)
     "tolerance_note": "why 0.25 ...",
     "machines": {"<cpu_model>": {"figures": {
         "<figure>": {"ratio": median over runs, "runs": [one ratio per run],
                      "max_run_deviation": max |run / ratio - 1|,
                      "bands": [[low, high] per run], "rounds": n}}}},
     "updates": [{"timestamp_utc", "git_sha", "host", "cpu_model", "why", "changed"}]}

A ratio of two kernels is a property of the CPU that runs them, not only of the code: the
same commit gives LSH-4 / SDPA at 2K 0.60 on an AMD EPYC and 0.89 on an Intel Xeon, because
the fused LSH kernel and PyTorch's GEMMs use each core's vector units differently. So a
baseline is kept per machine kind (the ``cpu_model`` of the run's environment), and a run is
gated only against the baseline of its own kind.

It changes only on purpose, through ``python -m suites.ci --update-baseline --why "..."``,
which measures the ratios in several separate benchmark runs, stores their median and
logs who moved what and why; the same why belongs in the commit message.
"""

from __future__ import annotations

import json
import re
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from suites.rows.store import utc_now

SCHEMA_VERSION = 2
DEFAULT_TOLERANCE = 0.25


@dataclass(frozen=True)
class Baseline:
    tolerance: float
    machine: str  # the cpu_model these ratios were measured on
    ratios: dict[str, float]  # figure -> committed ratio on ``machine``
    machines: tuple[str, ...]  # every machine kind the file holds a baseline for
    raw: dict[str, Any]  # the whole file, for updates

    def figures(self) -> dict[str, Any]:
        """This machine kind's figure entries (runs, bands, rounds) as stored."""
        return self.raw.get("machines", {}).get(self.machine, {}).get("figures", {})


def load_baseline(path: Path, machine: str) -> Baseline:
    """The committed baseline of one machine kind (a ``cpu_model``); an absent file, or a
    kind the file does not hold, has no ratios (every ratio figure ungated)."""
    if not isinstance(machine, str) or not machine.strip():
        raise ValueError(f"machine={machine!r} must name a CPU model (the run's cpu_model)")
    if not Path(path).exists():
        raw: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "tolerance": DEFAULT_TOLERANCE,
            "machines": {},
            "updates": [],
        }
        return Baseline(DEFAULT_TOLERANCE, machine, {}, (), raw)
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); restore it from git") from None
    if raw.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(
            f"{path}: schema_version={raw.get('schema_version')!r} is not {SCHEMA_VERSION} "
            "(one baseline per machine kind under 'machines'); restore it from git"
        )
    tolerance = raw.get("tolerance")
    if not isinstance(tolerance, int | float) or not 0 < tolerance < 1:
        raise ValueError(f"{path}: tolerance={tolerance!r} must be a fraction in (0, 1)")
    machines = raw.get("machines")
    if not isinstance(machines, dict):
        raise ValueError(f"{path}: machines={machines!r} must map a cpu_model to its figures")
    for kind, entry in machines.items():
        for name, figure in (entry.get("figures", {}) if isinstance(entry, dict) else {}).items():
            ratio = figure.get("ratio") if isinstance(figure, dict) else None
            if not isinstance(ratio, int | float) or ratio <= 0:
                raise ValueError(
                    f"{path}: machines[{kind!r}].figures.{name}.ratio={ratio!r} must be a "
                    "positive number"
                )
    own = machines.get(machine, {}).get("figures", {})
    ratios = {name: float(figure["ratio"]) for name, figure in own.items()}
    return Baseline(float(tolerance), machine, ratios, tuple(sorted(machines)), raw)


def updated_baseline(
    baseline: Baseline,
    runs: dict[str, list[dict[str, Any]]],
    *,
    why: str,
    provenance: dict[str, Any],
) -> dict[str, Any]:
    """The new file content: each figure in ``runs`` (figure -> one benchmark extra_info per
    run) set, for ``baseline.machine`` only, to the median of its runs' ratios; other
    figures and other machine kinds kept; the update logged."""
    if not why.strip():
        raise ValueError(
            "--why must say why the baseline moves (it is logged in the file "
            "and belongs in the commit message)"
        )
    if not runs:
        raise ValueError("no ratio figure was measured, so there is nothing to update")
    raw = json.loads(json.dumps(baseline.raw))  # a deep copy
    raw.setdefault("schema_version", SCHEMA_VERSION)
    raw.setdefault("tolerance", baseline.tolerance)
    machine = raw.setdefault("machines", {}).setdefault(baseline.machine, {})
    figures = machine.setdefault("figures", {})
    changed = {}
    for name, infos in sorted(runs.items()):
        ratios = [float(info["ratio"]) for info in infos]
        ratio = statistics.median(ratios)
        figures[name] = {
            "ratio": _round(ratio),
            "runs": [_round(r) for r in ratios],
            "max_run_deviation": _round(max(abs(r / ratio - 1) for r in ratios)),
            "bands": [
                [_round(info.get("ratio_low")), _round(info.get("ratio_high"))] for info in infos
            ],
            "rounds": infos[0].get("rounds"),
            "num_threads": infos[0].get("num_threads"),
        }
        changed[name] = {"old": baseline.ratios.get(name), "new": _round(ratio)}
    raw.setdefault("updates", []).append(
        {
            "timestamp_utc": utc_now(),
            "git_sha": provenance.get("git_sha"),
            "git_dirty": provenance.get("git_dirty"),
            "host": provenance.get("host"),
            "cpu_model": baseline.machine,
            "load_avg_1m": provenance.get("load_avg_1m"),
            "why": why.strip(),
            "changed": changed,
        }
    )
    return raw


def write_baseline(path: Path, content: dict[str, Any]) -> None:
    """Indented JSON, with lists of plain values kept on one line so diffs stay readable."""
    text = json.dumps(content, indent=2)
    text = re.sub(
        r"\[\s+([^\[\]{}]*?)\s+\]",
        lambda match: "[" + re.sub(r",\s+", ", ", match.group(1)) + "]",
        text,
    )
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(text + "\n", encoding="utf-8")


def _round(value: float | None) -> float | None:
    return None if value is None else float(f"{value:.4g}")
