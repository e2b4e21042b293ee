"""Efficiency: achieved FLOP/s as a fraction of what the hardware can do (MFU).

MFU ("model FLOPs utilisation", as nanoGPT's ``estimate_mfu``) is a row's ``tflops_per_s``
(model FLOPs of one step / its median time; suites.harness.measure) divided by a peak:

- on CUDA, the device's dense peak for the row's dtype, from :data:`DATASHEET_TFLOPS`
  (``peak_source`` = "datasheet"); a GPU not in the table gets the GEMM measure below;
- on CPU, this machine's own GEMM throughput, measured once per run in a child process
  started like every point's (same start method, same torch thread count): the median of
  a square float32 matmul, 4096 x 4096 (1024 for ``--quick`` grids), timed with
  ``Timer.blocked_autorange`` (``peak_source`` = "measured_gemm_4096").

Rows record ``peak_tflops``, ``peak_source`` and ``mfu``; all three are null where a row
has no FLOP rate (failed points, the quality suite) or no peak could be had.
"""

from __future__ import annotations

from typing import Any

# Dense peak TFLOP/s by GPU and dtype, from NVIDIA's datasheets, which quote the tensor-core
# figures with 2:4 structured sparsity: the dense figure is half of those. float32 is the
# non-tensor FP32 rate (torch runs float32 matmuls in true FP32 unless TF32 is enabled);
# "tf32" is listed for reference. Sources:
# - A100 (SXM4 and PCIe, 40 and 80 GB): nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf
#   (FP32 19.5, TF32 156, BF16/FP16 312 dense);
# - H100 SXM / PCIe / NVL: the NVIDIA H100 Tensor Core GPU datasheet (SXM: FP32 67,
#   TF32 989 sparse, BF16/FP16 1979 sparse; PCIe: 51, 756, 1513; NVL: 60, 835, 1671);
# - H200 SXM / NVL: the NVIDIA H200 Tensor Core GPU datasheet (same GH100 compute as the
#   H100: SXM 67, 989, 1979; NVL 60, 835, 1671).
# Checked against glennklockwood.com/garden/processors (H100 SXM5: FP32 66.9, TF32 494.7,
# BF16 989.4 dense; A100: FP32 19.5, TF32 156, BF16 312). Order matters: the first name
# fragment contained in the device name wins (so "H100 PCIe" before "H100").
DATASHEET_TFLOPS: tuple[tuple[str, dict[str, float]], ...] = (
    ("H200 NVL", {"bfloat16": 835.5, "float16": 835.5, "tf32": 417.5, "float32": 60.0}),
    ("H200", {"bfloat16": 989.5, "float16": 989.5, "tf32": 494.5, "float32": 67.0}),
    ("H100 NVL", {"bfloat16": 835.5, "float16": 835.5, "tf32": 417.5, "float32": 60.0}),
    ("H100 PCIe", {"bfloat16": 756.5, "float16": 756.5, "tf32": 378.0, "float32": 51.0}),
    ("H100", {"bfloat16": 989.5, "float16": 989.5, "tf32": 494.5, "float32": 67.0}),
    ("A100", {"bfloat16": 312.0, "float16": 312.0, "tf32": 156.0, "float32": 19.5}),
)
GEMM_SIZE = 4096
QUICK_GEMM_SIZE = 1024  # --quick grids: a smoke run, not worth seconds of matmul
GEMM_RUNNER = "suites.harness.efficiency:gemm_runner"
EFFICIENCY_FIELDS = ("peak_tflops", "peak_source", "mfu")


def datasheet_tflops(gpu_name: str | None, dtype: str) -> float | None:
    """Dense peak TFLOP/s of ``gpu_name`` (as NVML or torch names it) for ``dtype``
    ("float32", "bfloat16", "float16" or "tf32"), or None if the table lacks it."""
    if not gpu_name:
        return None
    name = gpu_name.upper()
    for fragment, peaks in DATASHEET_TFLOPS:
        if fragment.upper() in name:
            return peaks.get(dtype)
    return None


def gemm_source(size: int) -> str:
    return f"measured_gemm_{size}"


def measure_gemm_tflops(
    size: int = GEMM_SIZE, device: str = "cpu", dtype: str = "float32", min_run_time: float = 1.0
) -> float:
    """TFLOP/s of one (size, size) @ (size, size) matmul (2·size³ FLOPs): the median of
    Timer.blocked_autorange after one untimed warm call, at torch's current thread count."""
    import torch
    from torch.utils.benchmark import Timer

    from suites.harness.dtypes import TORCH_DTYPES

    generator = torch.Generator().manual_seed(0)
    a, b = (
        torch.randn(size, size, generator=generator).to(device=device, dtype=TORCH_DTYPES[dtype])
        for _ in range(2)
    )
    (a @ b).sum().item()  # warm: allocator, BLAS handles, CUDA context
    timer = Timer(stmt="a @ b", globals={"a": a, "b": b}, num_threads=torch.get_num_threads())
    seconds = timer.blocked_autorange(min_run_time=min_run_time).median
    return 2 * size**3 / seconds / 1e12


def gemm_runner(params: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """The GEMM measure as a harness runner (suites.harness.isolation runs it in a child):
    params ``size``, ``device``, ``dtype``, ``num_threads`` (None: torch's default)."""
    import torch

    if params.get("num_threads"):
        torch.set_num_threads(int(params["num_threads"]))
    size = int(params["size"])
    return {
        "peak_tflops": measure_gemm_tflops(size, params["device"], params["dtype"]),
        "peak_source": gemm_source(size),
        "num_threads": torch.get_num_threads(),
    }


def run_peaks(
    device: str, gpu_name: str | None, dtypes: set[str], threads: int | None, quick: bool
) -> dict[str, tuple[float | None, str | None]]:
    """Peak TFLOP/s and its source for each dtype a run's points use (module docstring).

    A failed GEMM measure gives (None, None): the rows' MFU stays null, the sweep goes on.
    """
    from suites.harness.isolation import run_point

    size = QUICK_GEMM_SIZE if quick else GEMM_SIZE
    peaks: dict[str, tuple[float | None, str | None]] = {}
    for dtype in sorted(dtypes):
        peak = datasheet_tflops(gpu_name, dtype) if device == "cuda" else None
        if peak is not None:
            peaks[dtype] = (peak, "datasheet")
            continue
        gemm_dtype = dtype if device == "cuda" else "float32"  # CPU: the fp32 reference
        measured = run_point(
            GEMM_RUNNER,
            {"size": size, "device": device, "dtype": gemm_dtype, "num_threads": threads},
            {},
            timeout_s=600.0,
            max_memory_gb=None,
        )
        peaks[dtype] = (
            (measured["peak_tflops"], measured["peak_source"])
            if measured["status"] == "ok"
            else (None, None)
        )
    return peaks


def efficiency_fields(
    tflops_per_s: float | None, peak: tuple[float | None, str | None] | None
) -> dict[str, Any]:
    """peak_tflops, peak_source and mfu = tflops_per_s / peak_tflops (null where unknown)."""
    peak_tflops, source = peak or (None, None)
    mfu = tflops_per_s / peak_tflops if tflops_per_s is not None and peak_tflops else None
    return {"peak_tflops": peak_tflops, "peak_source": source, "mfu": mfu}
