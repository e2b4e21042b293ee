"""Isolation: each sweep point runs in its own child process, under a memory cap.

Parent side, :func:`run_point`: start the child, wait up to the point's timeout, and turn
whatever happens into a status. A child killed by SIGKILL (the kernel's OOM killer) is
``oom``; one still running at the deadline is killed and ``timeout``; an exception is
``error`` with its message, except allocation failures, which are ``oom``. The runner
inside the child (by default :func:`suites.measure.measure_step`) only returns row fields;
statuses are decided here.

Memory cap (``--max-memory-gb``), applied in the child before the runner starts:

- CPU: ``RLIMIT_AS`` = the child's address-space size at start-up + the cap. Allocation
  beyond it fails inside the child with ``RuntimeError: ... can't allocate memory`` (or
  ``MemoryError``), which is mapped to ``oom``, so the machine never swaps or kills. The
  limit bounds virtual memory, a little above resident memory (thread stacks, malloc
  arenas), so it is conservative.
- CUDA: ``torch.cuda.set_per_process_memory_fraction(cap / device total)``; exceeding it
  raises ``torch.OutOfMemoryError`` -> ``oom``. (RLIMIT_AS cannot be used with CUDA, which
  reserves a vast address space.)
"""

from __future__ import annotations

import errno
import multiprocessing
import signal
import sys
import time
from typing import Any

GIB = 2**30
_CONTEXT: Any = None


# Imported once in the fork server rather than in every child. torch._dynamo is what the
# first optimizer construction imports (torch.optim wraps step in a dynamo guard): about
# 1.5 s of CPU per child, most of a tiny point's cost.
PRELOAD = [
    "torch",
    "torch.optim",
    "torch._dynamo",
    "torch.utils.flop_counter",
    "torch.utils.benchmark",
]


def _context() -> Any:
    """forkserver with torch preloaded: a fresh child in ~50 ms instead of ~1.5 s (spawn)."""
    global _CONTEXT
    if _CONTEXT is None:
        if "forkserver" in multiprocessing.get_all_start_methods():
            _CONTEXT = multiprocessing.get_context("forkserver")
            _CONTEXT.set_forkserver_preload(PRELOAD)
        else:
            _CONTEXT = multiprocessing.get_context("spawn")
    return _CONTEXT


def run_point(
    runner: str,
    params: dict[str, Any],
    options: dict[str, Any],
    *,
    timeout_s: float,
    max_memory_gb: float | None,
) -> dict[str, Any]:
    """Run one point in a child; always returns status, error and wall_s (plus results)."""
    ctx = _context()
    receiver, sender = ctx.Pipe(duplex=False)
    cap = None if max_memory_gb is None else int(max_memory_gb * GIB)
    child = ctx.Process(
        target=_child_main, daemon=True, args=(sender, runner, params, options, list(sys.path), cap)
    )
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
        return {"status": "timeout", "error": f"no result within {timeout_s:g} s", "wall_s": wall_s}
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
        name = (
            signal.Signals(-exitcode).name
            if -exitcode in signal.valid_signals()
            else str(-exitcode)
        )
        if -exitcode == signal.SIGKILL:
            return {
                "status": "oom",
                "error": "child killed by SIGKILL (the OS out-of-memory "
                "killer, or someone killed it)",
            }
        return {"status": "error", "error": f"child killed by signal {name}"}
    return {"status": "error", "error": f"child exited with code {exitcode} and no result"}


def _kill(child: Any) -> None:
    child.kill()
    child.join(timeout=30)


def _child_main(
    sender: Any,
    runner: str,
    params: dict[str, Any],
    options: dict[str, Any],
    path: list[str],
    cap_bytes: int | None,
) -> None:
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
        marker in text
        for marker in (
            "can't allocate memory",
            "cannot allocate memory",
            "out of memory",
            "std::bad_alloc",
        )
    )


def describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 2000 else text[:2000] + " ..."


def default_max_memory_gb(device: str) -> float | None:
    """Per-child cap when neither the suite nor --max-memory-gb sets one.

    CPU: 16 GiB or 70% of the memory available now, whichever is smaller, so one point
    cannot take the machine (or its other users) down. CUDA: no cap beyond the device.
    """
    if device == "cuda":
        return None
    import psutil

    return round(min(16.0, 0.7 * psutil.virtual_memory().available / 2**30), 1)


def proc_status_bytes(field: str) -> int:
    """A ``Vm*`` line of /proc/self/status, in bytes."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(f"{field} not in /proc/self/status")
