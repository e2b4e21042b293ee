"""Isolation: each sweep point runs in its own child process, under a memory cap.

Parent side, :func:`run_point`: start the child, wait up to the point's timeout, and turn
whatever happens into a status. A child killed by SIGKILL (the kernel's OOM killer) is
``oom``; one still running at the deadline is killed and ``timeout``, as is a runner that
stops itself by raising :class:`TooSlow` (a limit of its own, e.g. per generated token);
an exception is ``error`` with its message, except allocation failures, which are
``oom``. The runner
inside the child (by default :func:`suites.harness.measure.measure_step`) only returns row fields;
statuses are decided here.

Memory cap (``--max-memory-gb``), applied in the child before the runner starts:

- CPU: ``RLIMIT_AS`` = the child's address-space size at start-up + the cap. Allocation
  beyond it fails inside the child with ``RuntimeError: ... can't allocate memory`` (or
  ``MemoryError``), which is mapped to ``oom``, so the machine never swaps or kills. The
  limit bounds virtual memory, a little above resident memory (thread stacks, malloc
  arenas), so it is conservative. A process may not raise its hard limit, and clusters
  often set one (``ulimit -v``): the limit is then clamped to the inherited hard limit,
  and the row records the cap actually applied (``max_memory_gb``) beside the one asked
  for (``max_memory_gb_requested``).
- CUDA: ``torch.cuda.set_per_process_memory_fraction(cap / device total)``; exceeding it
  raises ``torch.OutOfMemoryError`` -> ``oom``. (RLIMIT_AS cannot be used with CUDA, which
  reserves a vast address space.)
"""

from __future__ import annotations

import contextlib
import errno
import functools
import multiprocessing
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from suites.harness import process_settings
from suites.harness.process_memory import MEMORY_BUDGET_GIB, cap_mechanism, proc_status_bytes


class TooSlow(Exception):
    """Raised by a runner that stops a point past a time limit of its own (the message
    names the limit): the row is ``timeout``, and longer lengths of its family skip, as
    for a point killed at the sweep's deadline."""


GIB = 2**30
_CONTEXT: Any = None
_SERVER_SETTINGS: dict[str, str] | None = None  # what the fork server started under
# Held while a point's child is being started: sweeps run from two threads of one process
# (a local sweep beside a Ray one) would otherwise race, one thread stopping the fork
# server for new settings while the other connects to it (EBADF in the connect).
_START_LOCK = threading.Lock()


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
    """forkserver with torch preloaded: a fresh child in ~50 ms instead of ~1.5 s (spawn).

    The fork server reads the process settings (suites.harness.process_settings) when it
    starts, and its children inherit them; after they change, the next child comes from a
    new server, so a point never runs under settings other than those applied."""
    global _CONTEXT, _SERVER_SETTINGS
    if _CONTEXT is None:
        if "forkserver" in multiprocessing.get_all_start_methods():
            _CONTEXT = multiprocessing.get_context("forkserver")
            _CONTEXT.set_forkserver_preload(PRELOAD)
        else:
            _CONTEXT = multiprocessing.get_context("spawn")
    settings = process_settings.exported()
    changed = _SERVER_SETTINGS is not None and settings != _SERVER_SETTINGS
    if changed and _CONTEXT.get_start_method() == "forkserver":
        from multiprocessing import forkserver

        # A private method (the standard library's own tests use it); the next child
        # starts a new server.
        forkserver._forkserver._stop()  # type: ignore[attr-defined]
    _SERVER_SETTINGS = settings
    return _CONTEXT


def run_point(
    runner: str,
    params: dict[str, Any],
    options: dict[str, Any],
    *,
    timeout_s: float,
    max_memory_gb: float | None,
    started: Callable[[Any], None] | None = None,
) -> dict[str, Any]:
    """Run one point in a child; always returns status, error and wall_s (plus results).

    ``started(child)`` is called with the child process once it runs, so that a caller
    waiting in another thread can kill it (:func:`kill_child`)."""
    cap = None if max_memory_gb is None else int(max_memory_gb * GIB)
    with _START_LOCK:
        ctx = _context()
        receiver, sender = ctx.Pipe(duplex=False)
        child = ctx.Process(
            target=_child_main,
            daemon=True,
            args=(sender, runner, params, options, list(sys.path), cap),
        )
        start = time.monotonic()
        child.start()
    sender.close()
    if started is not None:
        started(child)
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
    status, payload, applied = message
    if status == "ok":
        return {**payload, **applied, "status": "ok", "error": None, "wall_s": wall_s}
    return {**applied, "status": status, "error": payload, "wall_s": wall_s}


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
    error = f"child exited with code {exitcode} and no result"
    limit = inherited_address_limit()
    if limit is not None:
        # The usual cause under `ulimit -v`: too little address space to start a child.
        error += (
            f"; this process inherited a hard address-space limit of {limit / GIB:.2f} GiB "
            "(ulimit -v), which a child that imports torch may not fit: raise or remove it"
        )
    return {"status": "error", "error": error}


def inherited_address_limit() -> int | None:
    """The hard RLIMIT_AS this process inherited, in bytes (None: unlimited or no such
    limit here). Every point's child lives within it, start-up included."""
    try:
        import resource
    except ImportError:  # not a POSIX system
        return None
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    return None if hard == resource.RLIM_INFINITY else hard


def _kill(child: Any) -> None:
    child.kill()
    child.join(timeout=30)


def kill_child(child: Any) -> None:
    """Kill a point's child from outside :func:`run_point` (which then reports it as
    killed); a child that has already ended is left alone."""
    with contextlib.suppress(ValueError, AttributeError, ProcessLookupError):
        if child.is_alive():
            child.kill()


def _child_main(
    sender: Any,
    runner: str,
    params: dict[str, Any],
    options: dict[str, Any],
    path: list[str],
    cap_bytes: int | None,
) -> None:
    sys.path[:] = path
    # What this child really runs under (inherited from the fork server's start).
    applied: dict[str, Any] = process_settings.child_settings()
    # (status, the runner's row fields or the error's text, the cap applied)
    message: tuple[str, Any, dict[str, Any]]
    try:
        applied |= applied_cap_fields(cap_bytes, apply_memory_cap(cap_bytes, params.get("device")))
        from suites.harness.points import resolve_runner

        message = ("ok", resolve_runner(runner)(params, options), applied)
    except TooSlow as exc:
        message = ("timeout", describe(exc), applied)
        del exc
    except BaseException as exc:  # every outcome must reach the parent as a row
        message = ("oom" if is_oom(exc) else "error", describe(exc), applied)
        del exc  # drop the traceback's frames (and their tensors) before sending
    # A parent that is gone (killed, or interrupted and no longer listening) cannot take
    # the row; a traceback here would only clutter its terminal.
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        sender.send(message)
        sender.close()


def apply_memory_cap(cap_bytes: int | None, device: str | None) -> int | None:
    """Cap this process's memory (see the module docstring); returns the cap applied in
    bytes, less than ``cap_bytes`` where an inherited hard limit allows no more."""
    if cap_bytes is None:
        return None
    if cap_mechanism(device, cap_bytes) == "cuda_memory_fraction":
        import torch

        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, cap_bytes / total))
        return cap_bytes
    import resource

    start = proc_status_bytes("VmSize")
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = address_space_limit(start, cap_bytes, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return max(0, limit - start)


def address_space_limit(start_bytes: int, cap_bytes: int, hard: int) -> int:
    """RLIMIT_AS for a child of ``start_bytes`` capped at ``cap_bytes`` above that, within
    the hard limit it inherited (``hard``; RLIM_INFINITY for none)."""
    import resource

    wanted = start_bytes + cap_bytes
    return wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)


def applied_cap_fields(requested: int | None, applied: int | None) -> dict[str, Any]:
    """Row fields for a cap that was clamped: the cap applied and the one asked for."""
    if requested is None or applied is None or applied >= requested:
        return {}
    return {
        "max_memory_gb": round(applied / GIB, 3),
        "max_memory_gb_requested": round(requested / GIB, 3),
    }


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


@functools.cache
def default_max_memory_gb(device: str) -> float | None:
    """Per-child cap when neither the suite nor --max-memory-gb sets one.

    CPU: MEMORY_BUDGET_GIB (16 GiB) or 70% of the memory available now, whichever is
    smaller, so one point cannot take the machine (or its other users) down. CUDA: no cap
    beyond the device. Read once per process, so the sweep and its summary state one cap.
    """
    if device == "cuda":
        return None
    import psutil

    return round(min(MEMORY_BUDGET_GIB, 0.7 * psutil.virtual_memory().available / 2**30), 1)
