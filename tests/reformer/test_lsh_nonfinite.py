"""NaN and inf where a query may not look, on the torch path and the fused C kernel (the
checks are in ``nonfinite_cases.py``; ``lsh_triton_cases.py`` runs them on the Triton
kernels)."""

from __future__ import annotations

import pytest
import torch

from reformer.lsh.cpu import build
from tests.reformer.nonfinite_cases import (
    check_future_values_reach_no_earlier_query,
    check_nan_reaches_the_queries_that_may_see_it,
    check_padded_contents_reach_nothing,
)

BACKENDS = [
    "torch",
    pytest.param(
        "cpu",
        marks=pytest.mark.skipif(
            build.cpu_kernel_unavailable() is not None,
            reason=f"the fused CPU kernel cannot run here: {build.cpu_kernel_unavailable()}",
        ),
    ),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("causal", [True, False])
def test_padded_contents_reach_no_real_output_or_gradient(backend, causal):
    check_padded_contents_reach_nothing(backend, "cpu", causal)


@pytest.mark.parametrize("backend", BACKENDS)
def test_nonfinite_future_values_reach_no_earlier_query(backend):
    check_future_values_reach_no_earlier_query(backend, "cpu")


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_nonfinite_future_values_reach_no_earlier_query_torch_path_dtypes(dtype):
    check_future_values_reach_no_earlier_query("torch", "cpu", dtype)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("causal", [True, False])
def test_nonfinite_values_reach_exactly_the_queries_that_may_see_them(backend, causal):
    check_nan_reaches_the_queries_that_may_see_it(backend, "cpu", causal, atol=1e-5)
