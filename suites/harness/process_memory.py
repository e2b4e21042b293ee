"""Process memory, shared by the parent and the child of a point: how a memory cap is
enforced on a device, and the ``Vm*`` figures of /proc/self/status the cap and the CPU peak
are read from. Nothing here imports torch, so row assembly and the child's measuring both
use it without importing each other.
"""

from __future__ import annotations

# The paper's accelerator memory (16 GB, taken as GiB): the scale suite's default budget,
# the largest per-point cap on a CPU, and the memory suite's cap where it is not smaller.
MEMORY_BUDGET_GIB = 16.0


def cap_mechanism(device: str | None, max_memory_gb: float | None) -> str | None:
    """How a cap is enforced on a device (see the module docstring); None without a cap."""
    if max_memory_gb is None:
        return None
    return "cuda_memory_fraction" if device == "cuda" else "rlimit_as"


def proc_status_bytes(field: str) -> int:
    """A ``Vm*`` line of /proc/self/status, in bytes."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(f"{field} not in /proc/self/status")
