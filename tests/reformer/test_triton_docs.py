"""The docs state the Triton kernels' limits (docs/lsh.md) and the CUDA grids (docs/gpu.md)
as the code has them (they drifted once: chunks up to 128, a 6-layer scale model)."""

from __future__ import annotations

import re

from reformer.lsh.dispatch import TRITON_MAX_BUCKET_SIZE, TRITON_MAX_HEAD
from suites.grids.scale import LONG_LAYERS
from suites.harness.environment import REPO_ROOT
from suites.harness.suite import GridContext
from suites.registry import get_suite

DOCS = (REPO_ROOT / "docs" / "lsh.md").read_text() + (REPO_ROOT / "docs" / "gpu.md").read_text()


def _row(suite: str) -> str:
    """The suite's row in the table of CUDA grids (the last table naming it)."""
    rows = [line for line in DOCS.splitlines() if line.startswith(f"| `{suite}` |")]
    return rows[-1]


def test_every_stated_triton_chunk_limit_is_the_kernels():
    stated = re.findall(r"(?:Triton|bucket_size) up to (\d+)", DOCS)
    stated += re.findall(r"bucket_size ≤ (\d+)", DOCS)
    assert stated, "the docs state no Triton chunk limit"
    assert {int(n) for n in stated} == {TRITON_MAX_BUCKET_SIZE}, stated
    assert f"d_head ≤ {max(TRITON_MAX_HEAD.values())}" in DOCS


def test_the_scale_row_names_the_model_the_cuda_grid_runs():
    points = get_suite("scale").grid(GridContext(device="cuda"))
    layers = {p.params["n_layers"] for p in points}
    assert layers == {LONG_LAYERS}
    row = _row("scale")
    assert f"{LONG_LAYERS} layers" in row and "6-layer" not in row, row
    assert row.split("|")[2].strip().endswith(f": {len(points)}"), row


def test_the_chunks_row_counts_the_cuda_grid():
    points = get_suite("chunks").grid(GridContext(device="cuda"))
    assert _row("chunks").split("|")[2].strip().endswith(f": {len(points)}"), _row("chunks")
