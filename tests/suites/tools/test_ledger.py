"""The memory ledger (suites.tools.ledger): its tracked peak is the process's, and what it
counts."""

from __future__ import annotations

import sys

import pytest

from suites.harness.isolation import run_point
from suites.tools.ledger import ledger_step, scale_point

# A small long-context model whose only (L, d_model)-sized tensors are activations: the
# vocabulary (32) and the FF chunk (L/4 x 128) are narrower than d_model (64).
SMALL = dict(d_model=64, n_heads=2, d_ff=128, ff_chunks=4, vocab_size=32, bucket_size=16)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is Linux's")
def test_tracked_peak_matches_the_measured_peak():
    # In a fresh child process, as the suites measure, after a first small step that
    # touches the code pages and thread stacks a first step brings in (the tracker cannot
    # see those); the measured step then holds tensors and little else.
    point = scale_point(4096, d_model=128, d_ff=256, ff_chunks=8)
    result = run_point(
        "suites.tools.ledger:ledger_runner",
        point.params,
        {**point.runner_options(), "warm_up": scale_point(512, **SMALL)},
        timeout_s=600,
        max_memory_gb=None,
    )
    assert result["status"] == "ok", result["error"]
    if result["memory_method"] != "vmhwm_clear_refs":
        pytest.skip("this kernel does not let a process reset its VmHWM")
    assert result["measured_peak_bytes"] == pytest.approx(result["tracked_peak_bytes"], rel=0.10)


def test_ledger_table_ranks_the_largest_groups():
    ledger = ledger_step(scale_point(512, **SMALL), measure=False)
    top = ledger.rows(3)
    assert len(top) == 3 and top[0]["total_bytes"] >= top[1]["total_bytes"] >= top[2]["total_bytes"]
    assert sum(e["nbytes"] for e in ledger.entries) == ledger.tracked_peak_bytes
    assert "buffers" in ledger.table(5)


# The activation-sized buffers a reversible backward holds at its peak, in the LSH
# backward of a lower layer: the incoming gradient of the top output, which the autograd
# engine holds for the whole backward; the layer's X2, dX1 and dY2; the recomputed
# attention branch's qk and v projections and attention output (saved for its backward)
# and its output, which already holds X1; the gradient of the attention output; and dqk,
# dv. Eleven, at every depth.
REVERSIBLE_BACKWARD_BUFFERS = 11


@pytest.mark.parametrize("n_layers", [2, 3])
def test_reversible_backward_holds_a_fixed_number_of_buffers(n_layers):
    # One head and a few chunks at a time, as at long L, so the attention's own slices
    # are far smaller than an (L, d_model) buffer.
    ledger = ledger_step(
        scale_point(512, n_layers=n_layers, slice_elements=1 << 12, **SMALL), measure=False
    )
    assert ledger.peak_buffers == REVERSIBLE_BACKWARD_BUFFERS
