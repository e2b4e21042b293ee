"""End-of-run summary of the quality suite: the Table 2 matrix and bits per byte.

Printed by ``python -m suites.run quality`` under the harness's table. Measured numbers
only; the paper's Table 2 is printed beside them, labelled as published.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from suites.rows.names import LOCAL, SDPA, SHARED_FULL
from suites.rows.paper import BPB_TOLERANCE, EXPECTATIONS, TABLE2, TABLE2_EVAL
from suites.rows.quality_matrix import final_accuracies, final_indices

ABLATIONS = {
    SHARED_FULL: "exact shared-QK attention, no hashing",
    SDPA: "reversible stack with separate-QK attention, no shared QK",
    LOCAL: "local attention, chunks in position order: no hashing at one round's cost",
}


def _final_bytes(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The final row of each byte-LM model, evaluation and seed (suites.rows.quality_matrix)."""
    mine = [
        r
        for r in rows
        if r.get("status") == "ok"
        and r.get("task") == "bytes"
        and r.get("bits_per_byte") is not None
    ]
    keep = final_indices(
        [
            (r.get("model"), r.get("train_attention"), r.get("eval_attention"), r.get("seed"))
            for r in mine
        ],
        [r.get("step") for r in mine],
        [r.get("timestamp_utc") for r in mine],
    )
    return [mine[i] for i in keep]


def duplication_matrix(rows: list[dict[str, Any]]) -> dict[tuple[str, str], float]:
    """{(trained, evaluated): accuracy %, the mean over seeds} from each seed's final row."""
    return {cell: statistics.fmean(values) for cell, values in _seed_values(rows).items()}


def _seed_values(rows: list[dict[str, Any]]) -> dict[tuple[str, str], list[float]]:
    """{(trained, evaluated): accuracy % of each seed} (suites.rows.quality_matrix)."""
    found: dict[tuple[str, str], list[float]] = {}
    for final in final_accuracies(rows):
        found.setdefault((final.trained, final.evaluated), []).append(final.accuracy)
    return found


def summary_lines(rows: list[dict[str, Any]]) -> list[str]:
    lines: list[str] = []
    matrix = duplication_matrix(rows)
    if matrix:
        finals = final_accuracies(rows)
        seq_len = finals[0].row["seq_len"]
        seeds = sorted({final.seed for final in finals}, key=str)
        spread = _spreads(rows) if len(seeds) > 1 else {}
        # The paper's rows and columns, then ours it has not (local attention).
        trained_here = sorted({trained for trained, _ in matrix})
        evaluated_here = sorted({evaluated for _, evaluated in matrix})
        columns = [*TABLE2_EVAL, *(e for e in evaluated_here if e not in TABLE2_EVAL)]
        lines += [
            f"duplication task, accuracy % on the second half (L = {seq_len}); rows "
            "trained with, columns evaluated with; [paper Table 2, L = 1024; it has no local "
            "attention]; "
            + (
                f"mean ± standard deviation over {len(seeds)} seeds"
                if spread
                else "1 seed (a single run: read it with care)"
            ),
            "",
            "| trained \\ eval | " + " | ".join(columns) + " |",
            "|---" * (len(columns) + 1) + "|",
        ]
        for trained in [*TABLE2, *(t for t in trained_here if t not in TABLE2)]:
            paper = TABLE2.get(trained, ())
            cells = [
                _cell(
                    matrix.get((trained, ev)),
                    paper[i] if i < len(paper) else None,
                    spread.get((trained, ev)),
                )
                for i, ev in enumerate(columns)
            ]
            lines.append(f"| {trained} | " + " | ".join(cells) + " |")
        lines += ["", "expectations on the reduced task:"]
        for trained, evaluated, floor in EXPECTATIONS:
            value = matrix.get((trained, evaluated))
            verdict = (
                "not measured"
                if value is None
                else (f"{value:.1f}% -> {'met' if value >= floor else 'MISSED'}")
            )
            lines.append(f"- trained {trained}, evaluated {evaluated}: >= {floor:g}%: {verdict}")
    lines += _bytes_lines(rows)
    return lines


def _spreads(rows: list[dict[str, Any]]) -> dict[tuple[str, str], float]:
    """{(trained, evaluated): standard deviation over seeds} where a cell has several."""
    return {
        cell: statistics.stdev(values)
        for cell, values in _seed_values(rows).items()
        if len(values) > 1
    }


def _cell(value: float | None, paper: float | None, spread: float | None = None) -> str:
    text = "-" if value is None else f"{value:.1f}"
    if value is not None and spread is not None:
        text += f" ± {spread:.1f}"
    return text + ("" if paper is None else f" [{paper:g}]")


def _bytes_lines(rows: list[dict[str, Any]]) -> list[str]:
    final = _final_bytes(rows)
    if not final:
        return []
    # Each model is compared with the Transformer trained with the same seed.
    baseline = {
        r.get("seed"): r["bits_per_byte"] for r in final if r["model"].startswith("transformer")
    }
    several = len({r.get("seed") for r in final}) > 1
    lines = [
        "",
        f"byte LM, validation bits per byte after {final[0]['steps']} steps "
        f"({final[0]['tokens_seen']} tokens seen per model):",
        "",
        "| model | trained | evaluated | params | bits/byte | vs transformer |",
        "|---|---|---|---|---|---|",
    ]
    for r in sorted(
        final,
        key=lambda r: (r["model"], r["train_attention"], r["eval_attention"], str(r.get("seed"))),
    ):
        ratio = _vs(r, baseline)
        lines.append(
            f"| {_name(r, several)} | {r['train_attention']} | "
            f"{r['eval_attention']} | {r['n_params']} | {r['bits_per_byte']:.3f} | "
            + ("-" if math.isnan(ratio) else f"{ratio:+.1%}")
            + " |"
        )
    for r in final:
        ratio = _vs(r, baseline)
        if (
            not r["model"].startswith("reformer")
            or r["eval_attention"] != r["train_attention"]
            or math.isnan(ratio)
        ):
            continue
        head = f"- {_name(r, several)} {r['train_attention']}: {ratio:+.1%} vs transformer"
        if r["train_attention"].startswith("lsh"):
            verdict = "met" if ratio <= BPB_TOLERANCE else "MISSED"
            lines.append(f"{head} (expected within +{BPB_TOLERANCE:.0%}) -> {verdict}")
        else:
            lines.append(f"{head} (ablation: {ABLATIONS.get(r['train_attention'], '')})")
    return lines


def _vs(row: dict[str, Any], baseline: dict[Any, float]) -> float:
    reference = baseline.get(row.get("seed"))
    return math.nan if reference is None else row["bits_per_byte"] / reference - 1


def _name(row: dict[str, Any], several_seeds: bool) -> str:
    return f"{row['model']} (seed {row.get('seed')})" if several_seeds else row["model"]
