"""Measurement inside a point's child process: timing, memory peaks, saved bytes, FLOPs.

:func:`measure_step` is the default runner (the child side of :mod:`suites.harness.isolation`):
seed; build model and inputs untimed; one warm step, during which the bytes saved for
backward are counted (``suites.harness.saved_bytes``, forward only) and, for single layers, FLOPs
are counted with ``torch.utils.flop_counter``; then one step measured for memory, then timing with
``Timer.blocked_autorange`` (median, IQR, samples; it synchronises CUDA), topped up to
``min_samples`` calls (suites.rows.samples: a step slower than the time budget would
otherwise give one sample, whose IQR reads 0). ``memory_first``
(the scale suite) measures memory on the very first step instead, so the peak includes
what a first training step allocates for good (gradients, optimizer state).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import threading
from collections.abc import Callable
from typing import Any

from suites.harness.process_memory import proc_status_bytes
from suites.rows.samples import MIN_SAMPLES

MIB = 2**20


def measure_step(params: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """The default runner: build the point's step and measure it (module docstring).

    ``options`` carries the point's ``config`` and ``harness`` (suites.harness.points.Point)."""
    import torch

    from suites.harness.steps import build_step

    config, workload = options["config"], options["workload"]
    if workload.num_threads:
        torch.set_num_threads(workload.num_threads)
    torch.manual_seed(config.seed)
    step = build_step(params["model"], config, workload)
    device = workload.device
    result: dict[str, Any] = {"num_threads": torch.get_num_threads(), **step.info}
    if options.get("memory_first"):
        memory, (saved, counted) = peak_memory(lambda: counted_step(step, False), device)
    else:
        saved, counted = counted_step(step, count_flops=step.flops is None)
        memory, _ = peak_memory(step, device)
    flops = step.flops if step.flops is not None else counted
    result |= memory | {"saved_mib": saved / MIB, "flops": flops}
    result |= time_step(
        step,
        float(options.get("min_run_time", 0.5)),
        int(options.get("min_samples", MIN_SAMPLES)),
    )
    seconds = result["t_median_ms"] / 1e3
    result["tokens_per_s"] = step.tokens / seconds if seconds > 0 else None
    result["tflops_per_s"] = flops / seconds / 1e12 if flops and seconds > 0 else None
    return result


def counted_step(step: Any, count_flops: bool) -> tuple[int, int | None]:
    """One whole step; returns (bytes its forward saved for backward, FLOPs if counted).

    Only the forward runs under the saved-tensor hooks: what a backward recomputes
    (reversible layers, chunked FF) is transient and not "saved for backward".
    """
    from torch.utils.flop_counter import FlopCounterMode

    from suites.harness.saved_bytes import saved_bytes

    step.zero_grad()
    counter = FlopCounterMode(display=False) if count_flops else None
    with counter or contextlib.nullcontext():
        saved, graph = saved_bytes(step.forward)
        step.finish(graph)
    return saved, None if counter is None else counter.get_total_flops()


def time_step(step: Any, min_run_time: float, min_samples: int = MIN_SAMPLES) -> dict[str, Any]:
    """Timer.blocked_autorange over whole steps, then single calls until there are at least
    ``min_samples`` samples: median and IQR in ms, samples."""
    import torch
    from torch.utils.benchmark import Measurement, Timer

    timer = Timer(stmt="step()", globals={"step": step}, num_threads=torch.get_num_threads())
    measurement = timer.blocked_autorange(min_run_time=min_run_time)
    times = list(measurement.times)
    while len(times) < min_samples:
        times.append(timer.timeit(number=1).times[0])
    # One call per sample from here on: the median and IQR come from the same rule as
    # blocked_autorange's (Measurement computes both), over every sample taken.
    measurement = Measurement(1, times, measurement.task_spec)
    return {
        "t_median_ms": measurement.median * 1e3,
        "t_iqr_ms": measurement.iqr * 1e3,
        "n_samples": len(times),
    }


def peak_memory(
    fn: Callable[[], Any], device: str, method: str = "auto"
) -> tuple[dict[str, Any], Any]:
    """Peak memory of one call of ``fn`` above what was held before it, and fn's result.

    Returns ({peak_mib, reserved_mib, nvml_peak_mib, memory_method}, result). CPU ``method``:
    "auto" (clear_refs, else psutil), "clear_refs" or "psutil". Never tracemalloc: it sees
    Python objects, not tensor storage.
    """
    if device == "cuda":
        return _cuda_peak(fn)
    if method not in ("auto", "clear_refs", "psutil"):
        raise ValueError(f"method={method!r} is unknown; allowed: auto, clear_refs, psutil")
    gc.collect()
    _malloc_trim()  # so the step cannot reuse freed heap that the baseline already counts
    if method != "psutil" and _reset_high_water_mark():
        before = proc_status_bytes("VmRSS")
        result = fn()
        peak = proc_status_bytes("VmHWM") - before
        return _memory(max(0, peak), "vmhwm_clear_refs"), result
    if method == "clear_refs":
        raise RuntimeError("/proc/self/clear_refs cannot reset VmHWM here; use method='psutil'")
    with _Sampler(_rss_bytes) as sampler:
        result = fn()
    return _memory(sampler.peak - sampler.baseline, "psutil_sampling"), result


def _memory(
    peak_bytes: int, method: str, reserved: int | None = None, nvml: int | None = None
) -> dict[str, Any]:
    return {
        "peak_mib": peak_bytes / MIB,
        "memory_method": method,
        "reserved_mib": None if reserved is None else reserved / MIB,
        "nvml_peak_mib": None if nvml is None else nvml / MIB,
    }


def _reset_high_water_mark() -> bool:
    """Write 5 to /proc/self/clear_refs (resets VmHWM to VmRSS); False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return proc_status_bytes("VmHWM") - proc_status_bytes("VmRSS") <= MIB
    except (OSError, KeyError):
        return False


def _malloc_trim() -> None:
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _rss_bytes() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def _cuda_peak(fn: Callable[[], Any]) -> tuple[dict[str, Any], Any]:
    """Allocator peak above the base, reserved peak, and NVML device-used peak (sampled)."""
    import torch

    torch.cuda.synchronize()
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    used = _nvml_used()
    with _Sampler(used or (lambda: 0)) as sampler:
        result = fn()
        torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    return _memory(
        peak, "cuda_max_allocated", torch.cuda.max_memory_reserved(), sampler.peak if used else None
    ), result


def _nvml_used() -> Callable[[], int] | None:
    """Device-used bytes of the GPU this process runs on, or None without NVML."""
    try:
        import pynvml
        import torch

        pynvml.nvmlInit()
        uuid = str(torch.cuda.get_device_properties(torch.cuda.current_device()).uuid)
        handle = pynvml.nvmlDeviceGetHandleByUUID(
            uuid if uuid.startswith("GPU-") else f"GPU-{uuid}"
        )
        return lambda: int(pynvml.nvmlDeviceGetMemoryInfo(handle).used)
    except Exception:  # no NVML, no driver access: the field stays null
        return None


class _Sampler:
    """Polls ``read()`` every millisecond in a thread; keeps the baseline and the peak."""

    def __init__(self, read: Callable[[], int], interval_s: float = 1e-3) -> None:
        self.read, self.interval_s = read, interval_s
        self.baseline = self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> _Sampler:
        self.baseline = self.peak = self.read()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.read())

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak = max(self.peak, self.read())
