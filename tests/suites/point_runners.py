"""Synthetic point runners for the executor tests, run in a point's child process (named
"tests.suites.point_runners:..."); kept free of pytest and ray so a child imports little.

The child is a forkserver child: its parent is the forkserver, whose parent is the process
that called run_point (the Ray worker, under --executor ray).
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any


def ok(params: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """Sleeps ``params["sleep_s"]`` (default 0), leaves a mark, and is ok."""
    _mark(params)
    time.sleep(float(params.get("sleep_s") or 0.0))
    return {"t_median_ms": 1.0, "peak_mib": 0.0}


def progress_option(params: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """Ok, and says in its row whether it was allowed to draw progress bars."""
    return {"t_median_ms": 1.0, "impl": f"progress={options.get('progress', True)}"}


def kill_self(params: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """The point's own process dies by SIGKILL (what the OS OOM killer does)."""
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("unreachable")


def kill_worker(params: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """SIGKILLs the process that runs the point (the Ray worker): a dead worker."""
    os.kill(_runner_pid(), signal.SIGKILL)
    time.sleep(5)
    return {}


def hang_worker(params: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """Stops the process that runs the point (SIGSTOP), so it can never report: only the
    driver's deadline can end the task."""
    os.kill(_runner_pid(), signal.SIGSTOP)
    time.sleep(3)
    return {}


def sleep_long(params: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    time.sleep(60)
    return {}


def blob_at(params: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """Waits until the wall-clock instant ``params["at"]``, then returns a large field, so
    that tasks finish at the same moment with long rows to write."""
    time.sleep(max(0.0, float(params["at"]) - time.time()))
    return {"blob": str(params["seq_len"]) * params["blob_chars"]}


def _runner_pid() -> int:
    import psutil

    return psutil.Process().parent().parent().pid


def _mark(params: dict[str, Any]) -> None:
    """A trace per call, so a test can count which points really ran."""
    if params.get("marks"):
        with open(params["marks"], "a") as handle:
            handle.write(f"{params['model']}:{params['seq_len']}\n")


def sleep_while_flagged(params: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """Leaves a mark, then sleeps while the file ``params["flag"]`` exists (at most 60 s):
    a point that hangs until the test lets it go."""
    _mark(params)
    deadline = time.monotonic() + 60
    while os.path.exists(params["flag"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    return {"t_median_ms": 1.0, "peak_mib": 0.0}


def runner_pid(params: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """Reports the pid of the process that ran the point (the Ray worker, under Ray)."""
    return {"t_median_ms": 1.0, "peak_mib": 0.0, "runner_pid": _runner_pid()}


def lsh_backend(params: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """Ok, and says in its row which backend auto gives float32 CPU LSH attention here
    (building the fused CPU kernel, or finding why it cannot run)."""
    import torch

    from reformer.lsh.dispatch import resolve_backend

    return {"t_median_ms": 1.0, "impl": resolve_backend("auto", "cpu", torch.float32, 8, 8)}


def meet(params: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """Leaves ``<params["room"]>/<seq_len>`` and waits (at most ``params["wait_s"]``) until
    every length in ``params["others"]`` has left one too: ``impl`` is "met" when all were
    there at once, "alone" when the wait ran out (they did not run side by side)."""
    room = params["room"]
    with open(os.path.join(room, str(params["seq_len"])), "w"):
        pass
    deadline = time.monotonic() + float(params["wait_s"])
    while time.monotonic() < deadline:
        if all(os.path.exists(os.path.join(room, str(other))) for other in params["others"]):
            return {"t_median_ms": 1.0, "impl": "met"}
        time.sleep(0.05)
    return {"t_median_ms": 1.0, "impl": "alone"}
