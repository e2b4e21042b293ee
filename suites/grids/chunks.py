"""chunks: cost against chunk length and against the slice budget (one LSH-4 attention layer).

Two sweeps of one layer at the same lengths:

- **bucket_size** in 32 ... 512. Each chunk attends to itself and the previous one, so
  attention work per query grows with the chunk length (2·bucket_size keys) while the
  number of buckets (2·L/bucket_size) falls. On CUDA each point is measured through the
  torch path and, for chunks the Triton kernels take (up to 64), through them too.
- **slice_elements** in 2^15 ... 2^23 at bucket_size 64: the logits one batched op of the
  torch path handles (reformer.lsh.layout.Layout). Larger slices mean fewer, larger ops
  (faster where per-op overhead dominates, short lengths on a CPU) and more transient
  memory; the result never changes. At 4K one round of all four heads is 2^21 logits,
  so 2^23 slices there as 2^21 does (a free check of the noise); at 16K it is 2^23. The
  Triton kernels and the fused CPU kernel ignore the budget, so this sweep names the
  torch path (``backend="torch"``) on every device, while the bucket sweep runs what
  "auto" picks (the fused kernel on a CPU where it builds). On a CPU the sweep leaves out
  the default budget (that point of the bucket sweep is the fused kernel), so its "x"
  columns have no base there.
  ``--quick`` takes two small budgets, 2^14 (blocks of chunks) and 2^16 (one head per op),
  so a smoke run exercises both ways of slicing.

A point at the default budget has no ``slice_elements`` in its row (a config field joins
a row only away from its default), so the bucket sweep's points and keys are those of
before the second sweep. On CUDA the slice sweep's 2^19 point is the bucket sweep's
torch-path bucket_size 64 point, measured once. A row of the slice sweep is the only CPU
row that names a backend (``torch``): it is the one with ``slice_elements``.
"""

from __future__ import annotations

from typing import Any

from reformer.config import PRESETS, ReformerConfig
from reformer.lsh.layout import SLICE_ELEMENTS
from suites.grids._common import distinct, knob_grid, ok_rows, preset
from suites.harness.points import Point
from suites.harness.suite import GridContext, Suite

BUCKET_SIZES = (32, 64, 128, 256, 512)
SLICE_BUDGETS = (2**15, 2**17, 2**19, 2**21, 2**23)
QUICK_SLICE_BUDGETS = (2**14, 2**16)
# The slice sweep's chunk: the default model's, in every mode (--quick's bucket sweep has it
# too), so its default-budget point is a bucket-sweep point.
SLICE_BUCKET = PRESETS["default"].bucket_size


def _shape(ctx: GridContext) -> tuple[list[int], tuple[int, ...], tuple[int, ...], ReformerConfig]:
    """(lengths, bucket sizes, slice budgets, layer)."""
    if ctx.mode == "quick":
        return [512], (32, 64), QUICK_SLICE_BUDGETS, preset(ctx)
    if ctx.mode == "paper":
        return [2**14, 2**16], BUCKET_SIZES, SLICE_BUDGETS, preset(ctx)
    lengths = [2**14] if ctx.device == "cuda" else [2**12]
    return lengths, BUCKET_SIZES, SLICE_BUDGETS, preset(ctx)


def grid(ctx: GridContext) -> list[Point]:
    lengths, sizes, budgets, layer = _shape(ctx)
    if ctx.device != "cuda":
        # No torch-path point at the default budget on a CPU: there the bucket sweep runs
        # the fused kernel, and a row records the backend that ran, not the one named, so
        # a torch point at the default budget could not be told from an auto one that
        # fell back to torch. Every slice row away from the default names the torch path.
        budgets = tuple(b for b in budgets if b != SLICE_ELEMENTS)
    buckets = knob_grid(ctx, layer, "bucket_size", sizes, lengths)
    slices = knob_grid(
        ctx,
        layer.replace(bucket_size=SLICE_BUCKET),
        "slice_elements",
        budgets,
        lengths,
        torch_path_only=True,
    )
    return distinct(buckets + slices)


def slice_budget(row: dict[str, Any]) -> int:
    """The row's slice_elements: rows at the default budget do not record it."""
    value = row.get("slice_elements")
    return SLICE_ELEMENTS if value is None else int(value)


def summarize(rows: list[dict[str, Any]], ctx: GridContext) -> list[str]:
    ok = ok_rows(rows)
    lines = [
        f"bucket_size sweep (slice_elements {_power(SLICE_ELEMENTS)}, the default):",
        "",
        "| L | bucket_size | backend | n_buckets | t (ms) | peak (MiB) | saved (MiB) |",
        "|---|---|---|---|---|---|---|",
    ]
    at_default = [r for r in ok if slice_budget(r) == SLICE_ELEMENTS]
    for row in sorted(
        at_default, key=lambda r: (r["seq_len"], r["bucket_size"], r.get("backend") or "")
    ):
        lines.append(
            f"| {row['seq_len']} | {row['bucket_size']} | {row.get('backend') or '-'} | "
            f"{row['n_buckets']} | {row['t_median_ms']:.1f} | {row['peak_mib']:.1f} | "
            f"{row['saved_mib']:.1f} |"
        )
    # The torch path's rows only: on CUDA the bucket sweep's Triton point shares bucket 64.
    sliced = [
        r for r in ok if r["bucket_size"] == SLICE_BUCKET and r.get("backend") in (None, "torch")
    ]
    lines += [
        "",
        f"slice_elements sweep (bucket_size {SLICE_BUCKET}, torch path; x: against the "
        f"default {_power(SLICE_ELEMENTS)} at the same L):",
        "",
        "| L | slice_elements | t (ms) | peak (MiB) | saved (MiB) | time x | peak x |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in sorted(sliced, key=lambda r: (r["seq_len"], slice_budget(r))):
        default = next(
            (
                r
                for r in sliced
                if r["seq_len"] == row["seq_len"] and slice_budget(r) == SLICE_ELEMENTS
            ),
            None,
        )
        lines.append(
            f"| {row['seq_len']} | {_power(slice_budget(row))} | {row['t_median_ms']:.1f} | "
            f"{row['peak_mib']:.1f} | {row['saved_mib']:.1f} | "
            f"{_relative(row, default, 't_median_ms')} | {_relative(row, default, 'peak_mib')} |"
        )
    return lines


def _power(value: int) -> str:
    """2^k for a power of two, else the number."""
    exponent = value.bit_length() - 1
    return f"2^{exponent}" if value == 1 << exponent else str(value)


def _relative(row: dict[str, Any], default: dict[str, Any] | None, field: str) -> str:
    if default is None or not default.get(field):
        return "-"
    return f"{row[field] / default[field]:.2f}"


SUITE = Suite(
    name="chunks",
    description="cost vs chunk size (bucket_size 32..512) and slice budget (slice_elements)",
    grid=grid,
    summarize=summarize,
)
