"""The chunks suite: the bucket_size sweep keeps its points, the slice_elements sweep joins
it through the same knob_grid, and the summary shows both."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reformer.lsh.layout import SLICE_ELEMENTS
from suites.grids._common import distinct, knob_grid, preset
from suites.grids.chunks import (
    QUICK_SLICE_BUDGETS,
    SLICE_BUCKET,
    SLICE_BUDGETS,
    SUITE,
    grid,
    summarize,
)
from suites.harness.suite import GridContext

# The grid's keys before the slice sweep existed, captured from that code (see "about").
FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "chunks_point_keys.json").read_text())
# The fixture names the paper-scale grid by its schema-1 mode, "full".
CASES = [(device, mode) for device in ("cpu", "cuda") for mode in ("quick", "default", "paper")]
FIXTURE_MODE = {"paper": "full"}


def _points(device: str, mode: str):
    return grid(GridContext(device=device, mode=mode))


@pytest.mark.parametrize(("device", "mode"), CASES)
def test_the_bucket_sweep_keeps_its_point_keys(device, mode):
    points = _points(device, mode)
    keys = [point.key(FIXTURE["suite"], FIXTURE["hardware"]) for point in points]
    before = FIXTURE["keys"][device][FIXTURE_MODE.get(mode, mode)]
    assert keys[: len(before)] == before  # same points, same order, first
    assert len(set(keys)) == len(keys)  # the default budget's point is measured once
    added = points[len(before) :]
    # Every new point is the slice sweep's, away from the default budget.
    assert added and all(
        p.params.get("slice_elements") not in (None, SLICE_ELEMENTS) for p in added
    )
    assert all("slice_elements" not in p.params for p in points[: len(before)])


@pytest.mark.parametrize(("device", "mode"), CASES)
def test_the_slice_sweep_runs_the_torch_path_at_the_default_chunk(device, mode):
    points = _points(device, mode)
    budgets = QUICK_SLICE_BUDGETS if mode == "quick" else SLICE_BUDGETS
    lengths = sorted({p.seq_len for p in points})
    sliced = [p for p in points if "slice_elements" in p.params]
    expected = [(length, b) for length in lengths for b in budgets if b != SLICE_ELEMENTS]
    assert [(p.seq_len, p.params["slice_elements"]) for p in sliced] == expected
    assert {p.params["bucket_size"] for p in sliced} == {SLICE_BUCKET}
    # The Triton kernels and the fused CPU kernel ignore the budget: the sweep names the
    # torch path on every device.
    assert {p.params.get("backend") for p in sliced} == {"torch"}
    assert {p.config.slice_elements for p in sliced} == set(budgets) - {SLICE_ELEMENTS}


def test_quick_slice_budgets_slice_the_quick_layer_both_ways():
    # At --quick's shape one op holds every head at the default budget; the two quick
    # budgets must split it: 2^16 one head per op, 2^14 also blocks of chunks.
    from reformer.lsh.layout import Layout

    [point] = [p for p in _points("cpu", "quick") if p.params.get("slice_elements") == 2**16]
    config = point.config
    assert config is not None

    def layout(budget: int) -> Layout:
        return Layout(
            batch=1,
            n_heads=config.n_heads,
            n_hashes=config.n_hashes,
            padded_len=point.seq_len,
            bucket_size=config.bucket_size,
            causal=True,
            dup_correction=True,
            scale=1.0,
            slice_elements=budget,
        )

    chunks = point.seq_len // config.bucket_size
    assert list(layout(SLICE_ELEMENTS).groups()) == [(0, 1, 0, config.n_heads)]
    assert len(list(layout(2**16).groups())) == config.n_heads
    assert list(layout(2**16).chunk_blocks(1)) == [(0, chunks)]
    assert len(list(layout(2**14).chunk_blocks(1))) > 1


def test_knob_grid_can_keep_a_torch_path_knob_off_the_triton_kernels():
    ctx = GridContext(device="cuda", mode="quick")
    layer = preset(ctx, bucket_size=64)
    both = knob_grid(ctx, layer, "slice_elements", [2**14], [512])
    torch_only = knob_grid(ctx, layer, "slice_elements", [2**14], [512], torch_path_only=True)
    assert [p.params["backend"] for p in both] == ["torch", "triton"]
    assert [p.params["backend"] for p in torch_only] == ["torch"]
    cpu = GridContext(device="cpu", mode="quick")
    assert len(knob_grid(cpu, layer, "slice_elements", [2**14], [512], torch_path_only=True)) == 1


def test_distinct_keeps_the_first_of_equal_points():
    ctx = GridContext(device="cpu", mode="quick")
    layer = preset(ctx)
    points = knob_grid(ctx, layer, "bucket_size", [32, 64], [512])
    again = knob_grid(ctx, layer, "bucket_size", [64, 128], [512])
    kept = distinct(points + again)
    assert [p.params["bucket_size"] for p in kept] == [32, 64, 128]
    assert kept[1] is points[1]


def _row(seq_len, bucket_size, t_ms, peak, slice_elements=None, backend=None):
    row = {
        "status": "ok",
        "seq_len": seq_len,
        "bucket_size": bucket_size,
        "n_buckets": None,
        "t_median_ms": t_ms,
        "peak_mib": peak,
        "saved_mib": 2.0,
        "backend": backend,
    }
    return row | ({} if slice_elements is None else {"slice_elements": slice_elements})


def test_summary_shows_both_sweeps():
    rows = [
        _row(4096, 32, 30.0, 10.0),
        _row(4096, 64, 40.0, 12.0),
        _row(4096, 64, 80.0, 6.0, slice_elements=2**15),
        _row(4096, 64, 36.0, 24.0, slice_elements=2**21),
        _row(4096, 64, 99.0, 99.0, backend="triton"),  # CUDA: not the torch path
        {"status": "oom", "seq_len": 4096, "bucket_size": 512},
    ]
    lines = summarize(rows, GridContext(device="cpu"))
    split = next(i for i, line in enumerate(lines) if line.startswith("slice_elements sweep"))
    buckets, slices = lines[:split], lines[split:]
    assert buckets[0].startswith("bucket_size sweep (slice_elements 2^19")
    assert [line.split(" | ")[1] for line in buckets if line.startswith("| 4096")] == [
        "32",
        "64",
        "64",
    ]
    table = [line for line in slices if line.startswith("| 4096")]
    assert table == [
        "| 4096 | 2^15 | 80.0 | 6.0 | 2.0 | 2.00 | 0.50 |",
        "| 4096 | 2^19 | 40.0 | 12.0 | 2.0 | 1.00 | 1.00 |",
        "| 4096 | 2^21 | 36.0 | 24.0 | 2.0 | 0.90 | 2.00 |",
    ]
    assert "slice_elements" in SUITE.description
