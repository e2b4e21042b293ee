"""The process settings every point runs under: OpenMP's wait policy and glibc's mmap
threshold. Both are chosen on purpose, applied to every child, and recorded in its row.

Both are read once, when a process starts (OpenMP when torch loads its runtime, glibc at
the first allocation), so :func:`apply` sets them in this process's environment before the
first point's child process (and the fork server it is forked from) exists; a child then
reports what it really ran under (:func:`child_settings`), which is what the row records.

- ``--wait-policy`` (``OMP_WAIT_POLICY``). With ``active`` OpenMP threads spin at every
  barrier; with ``passive`` they sleep. Spinning saves a wake-up per parallel region on an
  idle machine, but when another process holds a core a spinning thread burns the time
  slice its partner needs, and a step made of many ops waits at every barrier.
  ``inherit`` leaves the variable as this shell has it (unset: OpenMP's own default, spin
  for a while, then sleep). ``auto`` (the default) is ``inherit`` on an idle machine and
  ``passive`` on a busy one (:func:`resolve_wait_policy`): on an idle 2-core CPU passive
  made the LSH layer's step 2-3x slower (a wake-up per op), while with one core busy
  OpenMP's default made it 3.5x slower than idle and passive about 2x. "Busy" is what the
  machine does now: the cores other processes kept busy over the last second
  (:func:`other_busy_cores`, from /proc/stat less this process's own CPU time), not the
  1-minute load average, which a run started after another timing job still reads as
  busy for minutes (its decay) and would send every point of an idle run to ``passive``.
- ``--mmap-threshold`` (``MALLOC_MMAP_THRESHOLD_``). glibc serves blocks under its
  threshold from a heap that it rarely gives back, and after the first large free it
  raises that threshold to the freed size (up to 32 MiB). A training step's few-MiB
  temporaries (one per attention slice and layer) then land on a heap that fragments: the
  reversible model's peak grew with depth although its tensors do not. A fixed threshold
  stops the raising, so every block above it is its own mapping, unmapped when freed, and
  the measured peak is that of the tensors. 0 leaves glibc's sliding default.
"""

from __future__ import annotations

import os
import time
from typing import Any

WAIT_POLICIES = ("auto", "passive", "active", "inherit")
DEFAULT_WAIT_POLICY = "auto"
# auto's rule: busy when other work holds at least half the cores, measured once before
# the first point (so a sweep's own children never count) over SAMPLE_S seconds.
BUSY_SHARE = 0.5
SAMPLE_S = 1.0
# 4 MiB: blocks above it (activations, attention slices' buffers) are returned when freed;
# smaller ones still come from the heap, so small tensors do not each pay a fresh mapping
# (a 64 KiB threshold measured 25-40% slower steps here, 4 MiB no slower; both on a
# machine with other jobs running, so a coarse check).
DEFAULT_MMAP_THRESHOLD = 4 * 2**20
# The row fields :func:`child_settings` fills.
SETTINGS_FIELDS = ("omp_wait_policy", "malloc_mmap_threshold")
_WAIT = "OMP_WAIT_POLICY"
_MMAP = "MALLOC_MMAP_THRESHOLD_"


def resolve_wait_policy(
    wait_policy: str, load: float | None = None, n_cpus: int | None = None
) -> str:
    """``auto`` made concrete: ``passive`` when the load (default: the cores other processes
    keep busy now, :func:`current_load`) is at least BUSY_SHARE of the CPUs (default: those
    this process may use), else ``inherit``. Any other policy is returned as it is."""
    if wait_policy != "auto":
        return wait_policy
    if load is None:
        load = current_load()
    if n_cpus is None:
        n_cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    return "passive" if load >= BUSY_SHARE * max(1, n_cpus) else "inherit"


def current_load(seconds: float | None = None) -> float:
    """Cores other processes keep busy now (:func:`other_busy_cores`), or, where /proc/stat
    is missing (not Linux), the 1-minute load average."""
    busy = other_busy_cores(SAMPLE_S if seconds is None else seconds)
    if busy is not None:
        return busy
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0


def other_busy_cores(seconds: float) -> float | None:
    """Average number of cores busy with other processes' work over the next ``seconds``:
    the machine's busy CPU time (/proc/stat: user, nice, system, irq, softirq, steal) less
    this process's and its reaped children's, per second of wall time. None without
    /proc/stat."""
    before, own_before, start = _machine_busy_s(), _own_cpu_s(), time.monotonic()
    if before is None:
        return None
    time.sleep(seconds)
    after, own_after, wall = _machine_busy_s(), _own_cpu_s(), time.monotonic() - start
    if after is None or wall <= 0:
        return None
    return max(0.0, ((after - before) - (own_after - own_before)) / wall)


def _machine_busy_s() -> float | None:
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = stat.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu" or len(fields) < 9:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def environment_variables(wait_policy: str, mmap_threshold: int) -> dict[str, str | None]:
    """The variables to set (a value) or clear (None); a setting left to the shell is absent.
    ``auto`` is resolved first (:func:`resolve_wait_policy`)."""
    wait_policy = resolve_wait_policy(wait_policy)
    if wait_policy not in WAIT_POLICIES:
        raise ValueError(f"wait_policy={wait_policy!r} is unknown; allowed: {WAIT_POLICIES}")
    if isinstance(mmap_threshold, bool) or not isinstance(mmap_threshold, int):
        raise ValueError(f"mmap_threshold={mmap_threshold!r} must be an int >= 0 (bytes)")
    if mmap_threshold < 0:
        raise ValueError(f"mmap_threshold={mmap_threshold!r} must be >= 0 (0: glibc's default)")
    variables: dict[str, str | None] = {}
    if wait_policy != "inherit":
        variables[_WAIT] = wait_policy.upper()
    variables[_MMAP] = str(mmap_threshold) if mmap_threshold else None
    return variables


def apply(
    wait_policy: str = DEFAULT_WAIT_POLICY, mmap_threshold: int = DEFAULT_MMAP_THRESHOLD
) -> None:
    """Set the points' settings in this process's environment, for children started from
    now on (this process itself keeps what it started with)."""
    for name, value in environment_variables(wait_policy, mmap_threshold).items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def exported() -> dict[str, str]:
    """The settings as this process's environment holds them, for processes started
    elsewhere (Ray workers on other nodes)."""
    return {name: os.environ[name] for name in (_WAIT, _MMAP) if name in os.environ}


def child_settings() -> dict[str, Any]:
    """What this process runs under, for its row: ``omp_wait_policy`` (None when unset) and
    ``malloc_mmap_threshold`` in bytes (None: glibc's sliding default)."""
    threshold = os.environ.get(_MMAP)
    return {
        "omp_wait_policy": os.environ.get(_WAIT),
        "malloc_mmap_threshold": int(threshold) if threshold and threshold.isdigit() else None,
    }
