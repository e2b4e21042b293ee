"""The figures CI tracks and the gates on them.

Two kinds of figure:

- **deterministic**: machine-independent numbers (bytes saved for backward, counted FLOPs)
  measured by suites.ci.deterministic and held to the fixed limits below (what O(L) memory
  and flat cost per token mean, with room for rounding);
- **ratio**: a time ratio of two steps interleaved in one process (suites/ci/benchmarks),
  held to the committed baseline (results/ci/baseline.json) within a relative tolerance. Every
  ratio is "ours / what we compare against", so only a *larger* ratio fails; a ratio
  below the band passes with a note to refresh the baseline on purpose.

A failing gate says which figure moved, by how much, and the command that reproduces it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

STATUSES = ("pass", "fail", "skipped", "baseline")  # baseline: set by --update-baseline
BENCH_FILE = "suites/ci/benchmarks/test_ratios.py"


@dataclass(frozen=True, kw_only=True)
class FigureSpec:
    name: str
    kind: str  # "deterministic" | "ratio"
    unit: str
    what: str  # one line: what the number is
    lower: float | None = None  # deterministic limits (inclusive)
    upper: float | None = None
    bench: str | None = None  # ratio figures: the pytest node that measures it
    requires_peer: str | None = None  # a peer model (baselines.peers) it needs installed

    def reproduce(self) -> str:
        """The command that measures (and gates) just this figure, writing no history."""
        return f"python -m suites.ci --only {self.name} --no-history"

    def limit_text(self) -> str:
        if self.lower is not None and self.upper is not None:
            return f"in [{self.lower:g}, {self.upper:g}]"
        return f">= {self.lower:g}" if self.lower is not None else f"<= {self.upper:g}"


FIGURES: tuple[FigureSpec, ...] = (
    FigureSpec(
        name="saved_bytes_slope_lsh",
        kind="deterministic",
        unit="log-log slope",
        what="bytes saved for backward vs L = 1K..8K, LSHSelfAttention (LSH-4)",
        upper=1.15,
    ),
    FigureSpec(
        name="saved_bytes_slope_full",
        kind="deterministic",
        unit="log-log slope",
        what="bytes saved for backward vs L = 1K..8K, full (materialised) attention",
        lower=1.85,
    ),
    FigureSpec(
        name="saved_bytes_slope_sdpa",
        kind="deterministic",
        unit="log-log slope",
        what="bytes saved for backward vs L = 1K..8K, SDPA attention",
        upper=1.15,
    ),
    FigureSpec(
        name="saved_bytes_depth_ratio",
        kind="deterministic",
        unit="x",
        what="bytes saved for backward, reversible ReformerLM, 12 layers / 2 layers",
        upper=1.25,
    ),
    FigureSpec(
        name="flops_per_token_spread_lsh",
        kind="deterministic",
        unit="fraction",
        what="fwd+bwd FLOPs per token of LSH attention, max/min - 1 over L = 1K..8K",
        upper=0.10,
    ),
    FigureSpec(
        name="flops_per_token_slope_full",
        kind="deterministic",
        unit="log-log slope",
        what="fwd+bwd FLOPs per token of full attention vs L = 1K..8K (1 = linear)",
        lower=0.9,
        upper=1.1,
    ),
    FigureSpec(
        name="lsh4_vs_full_8k",
        kind="ratio",
        unit="time ratio",
        what="LSH-4 attention fwd+bwd at 8K / full attention fwd+bwd at 8K",
        bench=f"{BENCH_FILE}::test_lsh4_vs_full_8k",
    ),
    FigureSpec(
        name="lsh4_vs_sdpa_2k",
        kind="ratio",
        unit="time ratio",
        what="LSH-4 attention fwd+bwd at 2K / SDPA (exact, fused) attention fwd+bwd at 2K",
        bench=f"{BENCH_FILE}::test_lsh4_vs_sdpa_2k",
    ),
    FigureSpec(
        name="lsh4_vs_sdpa_1k_b1",
        kind="ratio",
        unit="time ratio",
        what="LSH-4 attention fwd+bwd / SDPA, batch 1, L = 1K, d_model 256, 4 heads",
        bench=f"{BENCH_FILE}::test_lsh4_vs_sdpa_1k_b1",
    ),
    FigureSpec(
        name="ours_vs_reformer_pytorch",
        kind="ratio",
        unit="time ratio",
        what="our LSHSelfAttention fwd+bwd / reformer-pytorch's, L = 8K",
        bench=f"{BENCH_FILE}::test_ours_vs_reformer_pytorch",
        requires_peer="peer-reformer-pytorch",
    ),
    FigureSpec(
        name="ours_vs_reformer_pytorch_2k",
        kind="ratio",
        unit="time ratio",
        what="our LSHSelfAttention fwd+bwd / reformer-pytorch's, L = 2K",
        bench=f"{BENCH_FILE}::test_ours_vs_reformer_pytorch_2k",
        requires_peer="peer-reformer-pytorch",
    ),
    FigureSpec(
        name="reversible_vs_plain_step",
        kind="ratio",
        unit="time ratio",
        what="reversible ReformerLM training step / plain residual one (paper ~1.3-2x)",
        bench=f"{BENCH_FILE}::test_reversible_vs_plain_step",
    ),
)
SPECS: dict[str, FigureSpec] = {spec.name: spec for spec in FIGURES}


def spec(name: str) -> FigureSpec:
    try:
        return SPECS[name]
    except KeyError:
        raise ValueError(f"figure {name!r} is unknown; allowed: {tuple(SPECS)}") from None


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """One figure's gate result in one run."""

    figure: str
    kind: str
    status: str  # one of STATUSES
    value: float | None
    unit: str
    message: str  # one readable line; for a failure it names the move and the command
    limit: str | None = None
    baseline: float | None = None
    tolerance: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)


def check_limits(name: str, value: float, detail: dict[str, Any] | None = None) -> Outcome:
    """Gate a deterministic figure against its fixed limits."""
    figure = spec(name)
    if figure.kind != "deterministic":
        raise ValueError(f"figure {name!r} is a {figure.kind} figure; use check_ratio")
    common: dict[str, Any] = {
        "figure": name,
        "kind": figure.kind,
        "value": value,
        "unit": figure.unit,
        "limit": figure.limit_text(),
        "detail": dict(detail or {}),
    }
    if not math.isfinite(value):
        return Outcome(
            status="fail",
            message=(
                f"FAIL {name} = {value} is not a number ({figure.what}); reproduce: "
                f"{figure.reproduce()}"
            ),
            **common,
        )
    below = figure.lower is not None and value < figure.lower
    above = figure.upper is not None and value > figure.upper
    if not (below or above):
        return Outcome(
            status="pass", message=(f"ok   {name} = {value:.3f} ({figure.limit_text()})"), **common
        )
    bound = figure.lower if below else figure.upper
    assert bound is not None  # below or above a limit that is set
    return Outcome(
        status="fail",
        message=(
            f"FAIL {name} = {value:.3f}, limit {figure.limit_text()}: moved {value - bound:+.3f} "
            f"past {bound:g} ({figure.what}){_measured(detail)}; reproduce: "
            f"{figure.reproduce()}"
        ),
        **common,
    )


def check_ratio(
    name: str, value: float, baseline: float, tolerance: float, detail: dict[str, Any] | None = None
) -> Outcome:
    """Gate a ratio figure: fail when value > baseline · (1 + tolerance)."""
    figure = spec(name)
    if figure.kind != "ratio":
        raise ValueError(f"figure {name!r} is a {figure.kind} figure; use check_limits")
    if not (baseline > 0 and math.isfinite(baseline)):
        raise ValueError(f"baseline for {name!r} must be a positive number; got {baseline!r}")
    if not 0 < tolerance < 1:
        raise ValueError(f"tolerance must be a fraction in (0, 1); got {tolerance!r}")
    detail = dict(detail or {})
    common: dict[str, Any] = {
        "figure": name,
        "kind": figure.kind,
        "value": value,
        "unit": figure.unit,
        "limit": f"<= {baseline * (1 + tolerance):.3f}",
        "baseline": baseline,
        "tolerance": tolerance,
        "detail": detail,
    }
    if not (math.isfinite(value) and value > 0):
        return Outcome(
            status="fail",
            message=(
                f"FAIL {name} = {value} is not a positive ratio ({figure.what}); reproduce: "
                f"{figure.reproduce()}"
            ),
            **common,
        )
    change = value / baseline - 1
    noise = _noise(detail)
    if change > tolerance:
        return Outcome(
            status="fail",
            message=(
                f"FAIL {name} = {value:.3f} vs baseline {baseline:.3f}: {change:+.1%}, worse than "
                f"the +{tolerance:.0%} tolerance ({figure.what}){noise}; reproduce: "
                f"{figure.reproduce()}"
            ),
            **common,
        )
    note = ""
    if change < -tolerance:
        note = (
            f"; {-change:.0%} better than the baseline: if that is meant, refresh it "
            "(python -m suites.ci --update-baseline --why ...)"
        )
    return Outcome(
        status="pass",
        message=(
            f"ok   {name} = {value:.3f} vs baseline {baseline:.3f} ({change:+.1%}, "
            f"tolerance +{tolerance:.0%}){noise}{note}"
        ),
        **common,
    )


def skipped(name: str, reason: str) -> Outcome:
    figure = spec(name)
    return Outcome(
        figure=name,
        kind=figure.kind,
        status="skipped",
        value=None,
        unit=figure.unit,
        message=f"skip {name}: {reason}",
    )


def _measured(detail: dict[str, Any] | None) -> str:
    points = (detail or {}).get("points")
    if not points:
        return ""
    unit = (detail or {}).get("points_unit", "")
    shown = ", ".join(f"{key}: {_short(value, unit)}" for key, value in points.items())
    return f"; measured {shown}"


def _noise(detail: dict[str, Any]) -> str:
    if "ratio_low" not in detail or "ratio_high" not in detail:
        return ""
    text = f"; this run's 90% band {detail['ratio_low']:.3f}-{detail['ratio_high']:.3f}"
    if "numerator_median_s" in detail and "denominator_median_s" in detail:
        label = "CPU medians" if "process_time" in str(detail.get("clock")) else "medians"
        text += (
            f", {label} {detail.get('numerator', 'ours')} "
            f"{detail['numerator_median_s'] * 1e3:.0f} ms / "
            f"{detail.get('denominator', 'baseline')} "
            f"{detail['denominator_median_s'] * 1e3:.0f} ms over "
            f"{detail.get('rounds', '?')} rounds"
        )
    return text


def _short(value: Any, unit: str) -> str:
    if unit == "bytes" and isinstance(value, int | float):
        return f"{value / 2**20:.2f} MiB"
    if isinstance(value, int | float):
        return f"{value:.4g}" + (f" {unit}" if unit else "")
    return str(value)
