"""The harness's CUDA paths: memory cap, allocator peak, NVML sampling, environment fields,
a whole point measured on the GPU (with its backend and MFU), and the GEMM peak. Every
test here needs CUDA and skips cleanly without it."""

from __future__ import annotations

import importlib.util
import io
import re
import sys

import pytest
import torch

from suites.harness.efficiency import datasheet_tflops, measure_gemm_tflops
from suites.harness.environment import environment
from suites.harness.isolation import run_point
from suites.harness.measure import _nvml_used, peak_memory
from suites.harness.options import SweepOptions
from suites.harness.suite import GridContext, Suite
from suites.harness.sweep import run_sweep
from suites.rows.names import hardware_name
from suites.rows.store import read_rows

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

MIB = 2**20
MODULE = "tests.suites.harness.test_cuda"
HAS_NVML = importlib.util.find_spec("pynvml") is not None


def cuda_alloc_runner(params, options):
    """Allocates and touches ``mib`` MiB on the GPU (runs in the harness's child)."""
    buffer = torch.ones(params["mib"] * MIB // 4, device="cuda")
    torch.cuda.synchronize()
    return {"peak_mib": float(buffer.numel() * 4 / MIB)}


def test_the_cuda_memory_cap_turns_an_oversized_allocation_into_oom():
    params = {"model": "x", "seq_len": 1, "device": "cuda"}
    over = run_point(
        f"{MODULE}:cuda_alloc_runner", params | {"mib": 2048}, {}, timeout_s=120, max_memory_gb=1.0
    )
    assert over["status"] == "oom", over
    under = run_point(
        f"{MODULE}:cuda_alloc_runner", params | {"mib": 256}, {}, timeout_s=120, max_memory_gb=1.0
    )
    assert under["status"] == "ok" and under["peak_mib"] == 256, under


def test_cuda_peak_is_the_allocation_and_reserved_covers_it():
    def step():
        return torch.ones(256 * MIB // 4, device="cuda").sum()

    memory, result = peak_memory(step, "cuda")
    assert memory["memory_method"] == "cuda_max_allocated" and float(result) == 256 * MIB // 4
    assert memory["peak_mib"] == pytest.approx(256, rel=0.15)
    assert memory["reserved_mib"] >= memory["peak_mib"]


@pytest.mark.skipif(not HAS_NVML, reason="nvidia-ml-py (pynvml) is not installed")
def test_nvml_samples_the_device_used_memory_during_the_step():
    used = _nvml_used()
    assert used is not None and used() > 0
    memory, _ = peak_memory(lambda: torch.ones(512 * MIB // 4, device="cuda").sum(), "cuda")
    # Device-wide use: our context and the caching allocator's reserve sit under the peak.
    assert memory["nvml_peak_mib"] >= memory["peak_mib"] >= 500


def test_environment_names_the_gpu_driver_and_cuda():
    env = environment("cuda")
    torch_name = torch.cuda.get_device_name(0)
    assert env["gpu_name"] and (env["gpu_name"] in torch_name or torch_name in env["gpu_name"])
    assert env["cuda"] == torch.version.cuda and env["cuda"]
    if HAS_NVML:
        assert re.fullmatch(r"\d+\.\d+(\.\d+)*", env["driver"]), env["driver"]
    assert hardware_name(env, "cuda") == env["gpu_name"]
    assert environment("cpu")["gpu_name"] is None


def test_without_nvml_the_name_comes_from_torch_and_nvml_fields_stay_null(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml now fails
    env = environment("cuda")
    assert env["gpu_name"] == torch.cuda.get_device_name(0) and env["driver"] is None
    memory, _ = peak_memory(lambda: torch.ones(1024, device="cuda").sum(), "cuda")
    assert memory["nvml_peak_mib"] is None and memory["peak_mib"] > 0


def _lsh_point(dtype: str, backend: str | None = None):
    from reformer.config import PRESETS
    from suites.grids._common import layer_point

    config = PRESETS["default"].replace(d_model=64, n_heads=2, bucket_size=32)
    if backend is not None:
        config = config.replace(backend=backend)
    return layer_point(GridContext(device="cuda", mode="quick"), config, seq_len=1024, dtype=dtype)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_a_whole_point_measured_on_the_gpu_records_backend_and_mfu(tmp_path, dtype):
    point = _lsh_point(dtype)
    suite = Suite(name="gpu", description="test", grid=lambda ctx: [point])
    run_file = run_sweep(
        suite,
        GridContext(device="cuda", mode="quick"),
        SweepOptions(out_dir=tmp_path, progress=False),
        log=io.StringIO(),
    )
    (row,), problems = read_rows(run_file.path)
    assert not problems and row["status"] == "ok", row["error"]
    assert row["memory_method"] == "cuda_max_allocated" and row["reserved_mib"] is not None
    assert row["gpu_name"] and row["cuda"] and row["device"] == "cuda"
    assert row["backend"] in ("torch", "triton")
    if importlib.util.find_spec("triton") is not None:
        assert row["backend"] == "triton"  # "auto" on CUDA with triton installed
    peak = datasheet_tflops(row["gpu_name"], dtype)
    assert row["peak_source"] == ("datasheet" if peak else "measured_gemm_1024")
    assert row["peak_tflops"] > 0 and row["tflops_per_s"] > 0
    assert row["mfu"] == pytest.approx(row["tflops_per_s"] / row["peak_tflops"])


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_a_named_backend_runs_and_is_recorded(backend):
    if backend == "triton" and importlib.util.find_spec("triton") is None:
        pytest.skip("triton is not installed")
    point = _lsh_point("bfloat16", backend)
    result = run_point(
        point.runner, point.params, point.runner_options(), timeout_s=300, max_memory_gb=None
    )
    assert result["status"] == "ok", result["error"]
    assert result["backend"] == backend


def test_the_gemm_peak_on_the_gpu_stays_under_the_datasheet():
    """A measured bf16 GEMM above the table's dense peak would mean the table is wrong."""
    measured = measure_gemm_tflops(4096, "cuda", "bfloat16", min_run_time=0.2)
    assert measured > 0
    peak = datasheet_tflops(torch.cuda.get_device_name(0), "bfloat16")
    if peak is not None:
        assert measured <= 1.05 * peak
