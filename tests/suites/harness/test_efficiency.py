"""Efficiency fields (peak TFLOP/s, its source, MFU), the LSH backend a row records, the
FLOPs our layers are credited with, and the CUDA grids, all without a GPU."""

from __future__ import annotations

import pytest

import suites.harness.efficiency as efficiency
from reformer.config import ReformerConfig
from reformer.flops import flops_breakdown
from reformer.lsh.cpu.build import cpu_kernel_unavailable
from suites.harness.efficiency import datasheet_tflops, efficiency_fields, gemm_runner, run_peaks
from suites.harness.measure import counted_step
from suites.harness.spec import Workload
from suites.harness.steps import build_step
from suites.harness.suite import GridContext
from suites.registry import load_suites


@pytest.mark.parametrize(
    ("name", "dtype", "peak"),
    [
        ("NVIDIA H200", "bfloat16", 989.5),
        ("NVIDIA H200", "float32", 67.0),
        ("NVIDIA H200 NVL", "bfloat16", 835.5),
        ("NVIDIA H100 80GB HBM3", "float16", 989.5),
        ("NVIDIA H100 PCIe", "bfloat16", 756.5),
        ("NVIDIA H100 PCIe", "float32", 51.0),
        ("NVIDIA A100-SXM4-80GB", "bfloat16", 312.0),
        ("NVIDIA A100 80GB PCIe", "float32", 19.5),
        ("NVIDIA H100 NVL", "tf32", 417.5),
    ],
)
def test_datasheet_peaks_by_gpu_name_and_dtype(name, dtype, peak):
    assert datasheet_tflops(name, dtype) == peak


@pytest.mark.parametrize(
    ("name", "dtype"),
    [
        ("Tesla T4", "float16"),
        (None, "bfloat16"),
        ("", "float32"),
        ("NVIDIA H200", "float64"),
    ],
)
def test_unknown_gpus_and_dtypes_have_no_datasheet_peak(name, dtype):
    assert datasheet_tflops(name, dtype) is None


def test_mfu_is_achieved_over_peak_and_null_where_either_is_missing():
    assert efficiency_fields(247.375, (989.5, "datasheet")) == {
        "peak_tflops": 989.5,
        "peak_source": "datasheet",
        "mfu": 0.25,
    }
    assert efficiency_fields(None, (0.1, "measured_gemm_4096")) == {
        "peak_tflops": 0.1,
        "peak_source": "measured_gemm_4096",
        "mfu": None,
    }
    assert efficiency_fields(1.0, (None, None))["mfu"] is None
    assert efficiency_fields(1.0, None) == {"peak_tflops": None, "peak_source": None, "mfu": None}


def test_the_gemm_measure_reports_tflops_its_source_and_threads():
    measured = gemm_runner({"size": 128, "device": "cpu", "dtype": "float32", "num_threads": 1}, {})
    assert measured["peak_source"] == "measured_gemm_128" and measured["num_threads"] == 1
    assert 0 < measured["peak_tflops"] < 1e3


def test_cpu_peaks_are_one_fp32_gemm_per_dtype_in_a_child(monkeypatch):
    calls = []

    def fake_run_point(runner, params, options, **kwargs):
        calls.append((runner, params))
        return {"status": "ok", "peak_tflops": 0.05, "peak_source": "measured_gemm_4096"}

    monkeypatch.setattr("suites.harness.isolation.run_point", fake_run_point)
    peaks = run_peaks("cpu", None, {"float32", "bfloat16"}, threads=2, quick=False)
    assert peaks == {
        "float32": (0.05, "measured_gemm_4096"),
        "bfloat16": (0.05, "measured_gemm_4096"),
    }
    assert {runner for runner, _ in calls} == {efficiency.GEMM_RUNNER}
    assert all(
        params == {"size": 4096, "device": "cpu", "dtype": "float32", "num_threads": 2}
        for _, params in calls
    )


def test_cuda_peaks_come_from_the_datasheet_else_a_gemm_in_the_dtype(monkeypatch):
    calls = []

    def fake_run_point(runner, params, options, **kwargs):
        calls.append(params)
        return {"status": "error", "error": "no GPU"}

    monkeypatch.setattr("suites.harness.isolation.run_point", fake_run_point)
    assert run_peaks("cuda", "NVIDIA H200", {"bfloat16", "float32"}, None, quick=False) == {
        "bfloat16": (989.5, "datasheet"),
        "float32": (67.0, "datasheet"),
    }
    assert not calls
    # Not in the table: measured in the point's dtype; a failed measure leaves it null.
    assert run_peaks("cuda", "Tesla T4", {"float16"}, None, quick=True) == {"float16": (None, None)}
    assert calls == [{"size": 1024, "device": "cuda", "dtype": "float16", "num_threads": None}]


LAYER = ReformerConfig(d_model=32, n_heads=2, n_layers=1, bucket_size=8, n_hashes=2, max_seq_len=64)
# What "auto" runs for a float32 CPU tensor: the fused kernel where it builds.
CPU_LSH = "torch" if cpu_kernel_unavailable() else "cpu"


@pytest.mark.parametrize(
    ("model", "attention", "backend"),
    [
        ("attn-lsh", "lsh", CPU_LSH),
        ("attn-sdpa", "sdpa", None),
        ("attn-full", "full", None),
        ("reformer-lsh-rev", "lsh", CPU_LSH),
        ("transformer-sdpa", "sdpa", None),
    ],
)
def test_rows_record_the_lsh_backend_used(model, attention, backend):
    config = LAYER.replace(attention=attention, reversible=model.endswith("-rev"))
    if model.startswith("transformer"):
        config = config.replace(reversible=False)
    step = build_step(model, config, Workload(phase="fwd", seq_len=64))
    assert step.info["backend"] == backend


@pytest.mark.parametrize("attention", ["full", "lsh"])
@pytest.mark.parametrize("phase", ["fwd", "fwd_bwd"])
def test_layers_are_credited_with_model_flops_the_counter_agrees_with(attention, phase):
    """Materialised causal attention multiplies the whole square, model FLOPs only its
    causal half; the torch LSH path's backward also recomputes each round's QK^T. The
    counter sees both, model FLOPs leave them out. The torch path: the counter cannot see
    the fused CPU kernel's matmuls (they run in C), which is why rows use model FLOPs."""
    config = LAYER.replace(attention=attention, backend="torch")
    step = build_step(f"attn-{attention}", config, Workload(phase=phase, seq_len=64, batch=2))
    _, counted = counted_step(step, count_flops=True)
    assert step.info["flops_method"] == "analytic"
    core = flops_breakdown(config, 64, 2)["attention"]
    not_model_work = 0
    if attention == "lsh" and phase == "fwd_bwd":
        not_model_work = core // 2
    if attention == "full":  # causal: the masked half, 1x forward, 3x forward + backward
        not_model_work = core * (3 if phase == "fwd_bwd" else 1)
    assert counted == step.flops + not_model_work


def _cuda_grid(name: str, mode: str = "default"):
    return load_suites()[name].grid(GridContext(device="cuda", mode=mode))


@pytest.mark.parametrize("name", ["time", "peers"])
def test_cuda_speed_grids_run_bfloat16_and_sweep_the_backend(name):
    points = _cuda_grid(name)
    assert {p.params["dtype"] for p in points} == {"bfloat16"}
    ours = [p for p in points if p.params["model"] == "attn-lsh"]
    backends = {p.params.get("backend") for p in ours}
    assert backends == {"torch", "triton"}


@pytest.mark.parametrize("name", sorted(set(load_suites()) - {"quality"}))
@pytest.mark.parametrize("mode", ["quick", "default", "paper"])
def test_lsh_points_name_their_backend_on_cuda_only(name, mode):
    for device in ("cpu", "cuda"):
        points = load_suites()[name].grid(GridContext(device=device, mode=mode))
        ours = [
            p
            for p in points
            if p.params.get("attention") == "lsh" and not p.params["model"].startswith("peer-")
        ]
        named = {p.params.get("backend") for p in ours if "slice_elements" not in p.params}
        if device == "cuda":
            assert named and None not in named
        else:
            assert named <= {None}  # CPU points (and keys) are those of before backends
        # The chunks suite's slice sweep acts on the torch path alone and names it.
        sliced = {p.params.get("backend") for p in ours if "slice_elements" in p.params}
        assert sliced <= {"torch"}


def test_cuda_scale_default_reaches_2_to_the_20_through_triton():
    points = _cuda_grid("scale")
    assert max(p.seq_len for p in points) == 2**20
    assert {p.params.get("backend") for p in points} == {"triton"}


def test_a_grid_names_triton_only_where_its_kernels_fit():
    for point in _cuda_grid("chunks"):
        if point.params.get("backend") == "triton":
            assert point.params["bucket_size"] <= 128


def _timed(model, seq_len, t_ms, **fields):
    return {
        "model": model,
        "seq_len": seq_len,
        "t_median_ms": t_ms,
        "peak_mib": 10.0,
        "status": "ok",
        "impl": model,
        "impl_version": "1",
        **fields,
    }


def test_summaries_give_each_backend_its_own_line():
    from suites.grids import peers
    from suites.grids import time as time_suite

    rows = [
        _timed("attn-lsh", 4096, 2.0, backend="torch", n_hashes=4),
        _timed("attn-lsh", 4096, 0.5, backend="triton", n_hashes=4),
        _timed("attn-lsh", 8192, 2.0, backend="torch", n_hashes=4),
        _timed("attn-lsh", 8192, 0.5, backend="triton", n_hashes=4),
        _timed("attn-sdpa", 4096, 1.0),
        _timed("attn-sdpa", 8192, 4.0),
        _timed("peer-hf", 4096, 8.0),
        _timed("peer-hf", 8192, 9.0),
    ]
    ctx = GridContext(device="cuda")
    crossings = [line for line in time_suite.summarize(rows, ctx) if line.startswith("| LSH-4")]
    assert crossings == [
        "| LSH-4 (torch) | sdpa | 5793 | LSH-4 (torch) |",
        "| LSH-4 (triton) | sdpa | none in grid | LSH-4 (triton) throughout |",
    ]
    ours = [line for line in peers.summarize(rows, ctx) if line.startswith("| 4096")]
    assert [line.split(" | ")[1] for line in ours] == ["torch", "triton"]
