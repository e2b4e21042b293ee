"""Environment metadata written into every result row (docs/results.md).

Collected once per run in the parent process. Nothing here initialises CUDA: the GPU name
and driver come from NVML (nvidia-ml-py, import name ``pynvml``), so the parent stays
light and every measured child starts from a clean device.
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from pathlib import Path

import torch

from suites.harness.process_settings import child_settings

REPO_ROOT = Path(__file__).resolve().parents[2]


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity), else the machine's count."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def environment(device: str) -> dict[str, object]:
    """host, cpu_model, n_cpus, gpu_name, driver, torch, python, cuda, git_sha, git_dirty,
    omp_wait_policy, malloc_mmap_threshold."""
    gpu_name, driver = _nvml_gpu() if device == "cuda" else (None, None)
    sha, dirty = git_state()
    return {
        "host": socket.gethostname(),
        "cpu_model": cpu_model(),
        "n_cpus": usable_cpus(),
        "gpu_name": gpu_name,
        "driver": driver,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cuda": torch.version.cuda,
        "git_sha": sha,
        "git_dirty": dirty,
        # What points run under (suites.harness.process_settings); a point's own child reports
        # the same fields, which replace these in its row.
        **child_settings(),
    }


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_state() -> tuple[str | None, bool | None]:
    """(HEAD sha or None before the first commit, whether tracked code differs from it).

    Result files are excluded from the dirty check: appending to a committed results file
    does not change the code that measured it.
    """
    sha = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)results")
    dirty = None if status is None else bool(status.strip()) or sha is None
    return sha, dirty


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _nvml_gpu() -> tuple[str | None, str | None]:
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            index = int(os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0] or 0)
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            name = pynvml.nvmlDeviceGetName(handle)
            driver = pynvml.nvmlSystemGetDriverVersion()
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no driver, no NVML, or a UUID-style CUDA_VISIBLE_DEVICES
        return _torch_gpu_name(), None
    return _text(name), _text(driver)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _torch_gpu_name() -> str | None:
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
