"""The measurement protocol (DESIGN.md, "Measurement protocol"), one child process per point.

Parent side, :func:`run_point`: start the child, wait up to the point's timeout, and turn
whatever happens into a status. A child killed by SIGKILL (the kernel's OOM killer) is
``oom``; one still running at the deadline is killed and ``timeout``; an exception is
``error`` with its message, except allocation failures, which are ``oom``.

Memory cap (``--max-memory-gb``), applied in the child before the model is built:

- CPU: ``RLIMIT_AS`` = the child's address-space size at start-up + the cap. Allocation
  beyond it fails inside the child with ``RuntimeError: ... can't allocate memory`` (or
  ``MemoryError``), which is mapped to ``oom``, so the machine never swaps or kills. The
  limit bounds virtual memory, a little above resident memory (thread stacks, malloc
  arenas), so it is conservative.
- CUDA: ``torch.cuda.set_per_process_memory_fraction(cap / device total)``; exceeding it
  raises ``torch.OutOfMemoryError`` -> ``oom``. (RLIMIT_AS cannot be used with CUDA, which
  reserves a vast address space.)

Child side, :func:`measure_step` (the default runner): seed; build model and inputs
untimed; one warm step, during which the bytes saved for backward are counted
(``suites.saved_bytes``, forward only) and, for single layers, FLOPs are counted with
``torch.utils.flop_counter``; then the memory pass, then timing with
``Timer.blocked_autorange`` (median, IQR, samples; it synchronises CUDA). ``memory_first``
(the scale suite) measures memory on the very first step instead, so the peak includes
what a first training step allocates for good (gradients, optimizer state).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import gc
import multiprocessing
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

MIB = 2**20
GIB = 2**30
_CONTEXT: Any = None


def _context() -> Any:
    """forkserver with torch preloaded: a fresh child in ~50 ms instead of ~1.5 s (spawn)."""
    global _CONTEXT
    if _CONTEXT is None:
        if "forkserver" in multiprocessing.get_all_start_methods():
            _CONTEXT = multiprocessing.get_context("forkserver")
            _CONTEXT.set_forkserver_preload(["torch"])
        else:
            _CONTEXT = multiprocessing.get_context("spawn")
    return _CONTEXT


def run_point(runner: str, params: dict[str, Any], options: dict[str, Any], *,
              timeout_s: float, max_memory_gb: float | None) -> dict[str, Any]:
    """Run one point in a child; always returns status, error and wall_s (plus results)."""
    ctx = _context()
    receiver, sender = ctx.Pipe(duplex=False)
    cap = None if max_memory_gb is None else int(max_memory_gb * GIB)
    child = ctx.Process(target=_child_main, daemon=True,
                        args=(sender, runner, params, options, list(sys.path), cap))
    start = time.monotonic()
    child.start()
    sender.close()
    message, timed_out = None, False
    try:
        if receiver.poll(timeout_s):
            message = receiver.recv()
        else:
            timed_out = True
    except EOFError:  # the child died without a word
        message = None
    except BaseException:
        _kill(child)
        raise
    wall_s = time.monotonic() - start
    if timed_out:
        _kill(child)
        return {"status": "timeout", "error": f"no result within {timeout_s:g} s",
                "wall_s": wall_s}
    child.join(timeout=30)
    if child.is_alive():
        _kill(child)
    if message is None:
        return {**_death(child.exitcode), "wall_s": wall_s}
    status, payload = message
    if status == "ok":
        return {**payload, "status": "ok", "error": None, "wall_s": wall_s}
    return {"status": status, "error": payload, "wall_s": wall_s}


def _death(exitcode: int | None) -> dict[str, Any]:
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name if -exitcode in signal.valid_signals() else str(
            -exitcode)
        if -exitcode == signal.SIGKILL:
            return {"status": "oom", "error": "child killed by SIGKILL (the OS out-of-memory "
                                              "killer, or someone killed it)"}
        return {"status": "error", "error": f"child killed by signal {name}"}
    return {"status": "error", "error": f"child exited with code {exitcode} and no result"}


def _kill(child: Any) -> None:
    child.kill()
    child.join(timeout=30)


def _child_main(sender: Any, runner: str, params: dict[str, Any], options: dict[str, Any],
                path: list[str], cap_bytes: int | None) -> None:
    sys.path[:] = path
    try:
        apply_memory_cap(cap_bytes, params.get("device"))
        from suites.registry import resolve_runner

        message = ("ok", resolve_runner(runner)(params, options))
    except BaseException as exc:  # every outcome must reach the parent as a row
        message = ("oom" if is_oom(exc) else "error", describe(exc))
        del exc  # drop the traceback's frames (and their tensors) before sending
    sender.send(message)
    sender.close()


def cap_mechanism(device: str | None, max_memory_gb: float | None) -> str | None:
    """How a cap is enforced on a device (see the module docstring); None without a cap."""
    if max_memory_gb is None:
        return None
    return "cuda_memory_fraction" if device == "cuda" else "rlimit_as"


def apply_memory_cap(cap_bytes: int | None, device: str | None) -> None:
    """Cap this process's memory (see the module docstring)."""
    if cap_bytes is None:
        return
    if cap_mechanism(device, cap_bytes) == "cuda_memory_fraction":
        import torch

        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, cap_bytes / total))
    else:
        import resource

        limit = proc_status_bytes("VmSize") + cap_bytes
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def is_oom(exc: BaseException) -> bool:
    """Allocation failures: MemoryError, torch.OutOfMemoryError, ENOMEM, allocator errors."""
    if isinstance(exc, MemoryError):
        return True
    if type(exc).__name__ == "OutOfMemoryError":
        return True
    if isinstance(exc, OSError) and exc.errno == errno.ENOMEM:
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(
        marker in text for marker in ("can't allocate memory", "cannot allocate memory",
                                      "out of memory", "std::bad_alloc"))


def describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 2000 else text[:2000] + " ..."


def proc_status_bytes(field: str) -> int:
    """A ``Vm*`` line of /proc/self/status, in bytes."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(f"{field} not in /proc/self/status")


def measure_step(params: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """The default runner: build the point's step and measure it (module docstring)."""
    import torch

    from suites.steps import build_step

    if params.get("num_threads"):
        torch.set_num_threads(int(params["num_threads"]))
    torch.manual_seed(int(params.get("seed", 0)))
    step = build_step(params)
    device = params["device"]
    result: dict[str, Any] = {"num_threads": torch.get_num_threads(), **step.info}
    if options.get("memory_first"):
        memory, (saved, counted) = peak_memory(lambda: counted_step(step, False), device)
    else:
        saved, counted = counted_step(step, count_flops=step.flops is None)
        memory, _ = peak_memory(step, device)
    flops = step.flops if step.flops is not None else counted
    result |= memory | {"saved_mb": saved / MIB, "flops": flops}
    result |= time_step(step, float(options.get("min_run_time", 0.5)))
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

    from suites.saved_bytes import saved_bytes

    step.zero_grad()
    counter = FlopCounterMode(display=False) if count_flops else None
    with counter or contextlib.nullcontext():
        saved, graph = saved_bytes(step.forward)
        step.finish(graph)
    return saved, None if counter is None else counter.get_total_flops()


def time_step(step: Any, min_run_time: float) -> dict[str, Any]:
    """Timer.blocked_autorange over whole steps: median and IQR in ms, samples."""
    import torch
    from torch.utils.benchmark import Timer

    timer = Timer(stmt="step()", globals={"step": step}, num_threads=torch.get_num_threads())
    measurement = timer.blocked_autorange(min_run_time=min_run_time)
    return {"t_median_ms": measurement.median * 1e3, "t_iqr_ms": measurement.iqr * 1e3,
            "n_samples": len(measurement.times)}


def peak_memory(fn: Callable[[], Any], device: str, method: str = "auto"
                ) -> tuple[dict[str, Any], Any]:
    """Peak memory of one call of ``fn`` above what was held before it, and fn's result.

    Returns ({peak_mb, reserved_mb, nvml_peak_mb, memory_method}, result). CPU ``method``:
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


def _memory(peak_bytes: int, method: str, reserved: int | None = None,
            nvml: int | None = None) -> dict[str, Any]:
    return {"peak_mb": peak_bytes / MIB, "memory_method": method,
            "reserved_mb": None if reserved is None else reserved / MIB,
            "nvml_peak_mb": None if nvml is None else nvml / MIB}


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
    return _memory(peak, "cuda_max_allocated", torch.cuda.max_memory_reserved(),
                   sampler.peak if used else None), result


def _nvml_used() -> Callable[[], int] | None:
    """Device-used bytes of the GPU this process runs on, or None without NVML."""
    try:
        import pynvml
        import torch

        pynvml.nvmlInit()
        uuid = str(torch.cuda.get_device_properties(torch.cuda.current_device()).uuid)
        handle = pynvml.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith("GPU-")
                                                  else f"GPU-{uuid}")
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
