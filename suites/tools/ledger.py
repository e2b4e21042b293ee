"""Memory ledger of one training step: which tensors are alive at the peak, and who made them.

``python -m suites.tools.ledger --seq-len N [--n-layers K] [--out results/ledger]`` builds the
scale suite's model (ReformerLM, LSH, reversible, chunked FF, axial positions, AdamW),
runs one training step and prints the largest tensors alive at the moment the step's
tensor memory peaked: where each was allocated (the innermost line of this project's code
on the stack, and the autograd node in backward), the operator, shape, dtype, bytes, and
bytes in units of one (B, L, d_model) float32 buffer (1 GiB at L = 2^20, d_model 256).

CPU: a ``TorchDispatchMode`` sees every operator's outputs; each new storage is
recorded with a weak reference per tensor that uses it, and counted as freed when the last
one dies (PyTorch keeps a tensor's Python object alive while autograd still holds the
tensor, so saved tensors stay counted). The tracked peak is compared with the process's
own high-water mark (``suites.harness.measure.peak_memory``), which the same step sets.
CUDA: ``torch.cuda.memory._record_memory_history`` and its snapshot at the allocator's
peak would be the faithful source; this tool uses the dispatch tracker on every device,
which sees tensors, not allocator blocks.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import sys
import time
import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from suites.grids.scale import LONG_FF_CHUNKS, LONG_LAYERS
from suites.harness.environment import REPO_ROOT

if TYPE_CHECKING:
    from suites.harness.points import Point

MIB = 2**20
GIB = 2**30
_OWN_DIRS = ("reformer", "suites", "baselines")
# Allocations smaller than this fraction of one (L, d_model) buffer skip the stack walk.
_SITE_FRACTION = 1 / 64


# glibc serves blocks below its mmap threshold from the heap, and after the first large
# free it raises that threshold (up to 32 MiB), so the attention's many few-MiB slice
# temporaries end up on a heap that fragments and is not given back (+28% of the peak at
# L = 2^15 here). The ledger fixes the threshold, so every block above it is its own
# mapping, returned to the OS when freed, and the measured peak it prints beside the
# tracked one is that of the tensors. The suites leave glibc's default (it costs time:
# every slice temporary is then a fresh mapping).
MMAP_THRESHOLD = 1 << 16
_M_MMAP_THRESHOLD = -3  # mallopt parameter number (malloc.h)


def fix_mmap_threshold(threshold: int = MMAP_THRESHOLD) -> int | None:
    """Set glibc's mmap threshold for this process; returns it, or None where not glibc."""
    try:
        done = ctypes.CDLL("libc.so.6").mallopt(_M_MMAP_THRESHOLD, threshold)
    except (OSError, AttributeError):
        return None
    return threshold if done == 1 else None


@dataclass
class Entry:
    """One storage the step allocated."""

    site: str  # innermost project source line, "file.py:line function"
    op: str  # the ATen operator that produced it
    node: str  # the autograd node running when it was made ("" in forward)
    shape: tuple[int, ...]
    dtype: str
    nbytes: int


class StorageTracker(TorchDispatchMode):
    """Tracks bytes of live storages made by operators run inside it, and their peak."""

    def __init__(self, unit_bytes: int) -> None:
        super().__init__()
        self.unit_bytes = unit_bytes
        self.live: dict[int, Entry] = {}  # storage data_ptr -> entry
        self._holders: dict[int, int] = {}  # data_ptr -> live tensors known to use it
        self._seen: dict[int, int] = {}  # id(tensor) -> data_ptr, for tensors with a finaliser
        self.live_bytes = 0
        self.peak_bytes = 0
        self.peak_entries: list[Entry] = []
        # Storages of at least one (B, L, d_model) buffer, counted apart from the slices of
        # fixed size: their peak number says how many activation-sized buffers a step holds.
        self.buffers_live = 0
        self.buffers_peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in _tensors(out):
            self._track(tensor, func)
        return out

    def _track(self, tensor: torch.Tensor, func: Any) -> None:
        if tensor.device.type == "meta":
            return
        storage = tensor.untyped_storage()
        ptr, nbytes = storage.data_ptr(), storage.nbytes()
        if nbytes == 0 or self._seen.get(id(tensor)) == ptr:
            return
        if ptr not in self.live:
            self.live[ptr] = Entry(
                _site(nbytes >= self.unit_bytes * _SITE_FRACTION),
                str(func.overloadpacket.__name__),
                _node(),
                tuple(tensor.shape),
                str(tensor.dtype).removeprefix("torch."),
                nbytes,
            )
            self._holders[ptr] = 0
            self.live_bytes += nbytes
            if nbytes >= self.unit_bytes:
                self.buffers_live += 1
                self.buffers_peak = max(self.buffers_peak, self.buffers_live)
            if self.live_bytes > self.peak_bytes:
                self.peak_bytes = self.live_bytes
                self.peak_entries = list(self.live.values())
        self._holders[ptr] += 1
        self._seen[id(tensor)] = ptr
        weakref.finalize(tensor, self._release, id(tensor), ptr)

    def _release(self, key: int, ptr: int) -> None:
        if self._seen.get(key) == ptr:
            del self._seen[key]
        self._holders[ptr] -= 1
        if self._holders[ptr] == 0:
            del self._holders[ptr]
            nbytes = self.live.pop(ptr).nbytes
            self.live_bytes -= nbytes
            self.buffers_live -= nbytes >= self.unit_bytes


def _tensors(out: Any) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for t in out if isinstance(t, torch.Tensor)]
    return []


def _site(walk: bool) -> str:
    if not walk:
        return "(small)"
    frame: FrameType | None = sys._getframe(3)
    while frame is not None:
        path = Path(frame.f_code.co_filename)
        # The project's own frames, at any depth of its packages (suites/harness/steps.py).
        if path.is_relative_to(REPO_ROOT) and path.name != "ledger.py":
            where = path.relative_to(REPO_ROOT)
            if where.parts[0] in _OWN_DIRS:
                return f"{where.as_posix()}:{frame.f_lineno} {frame.f_code.co_name}"
        frame = frame.f_back
    return "(torch)"


def _node() -> str:
    node = torch._C._current_autograd_node()
    return "" if node is None else node.name()


@dataclass
class Ledger:
    """The outcome of :func:`ledger_step`: peaks and the entries alive at the tracked peak."""

    seq_len: int
    batch: int
    d_model: int
    n_layers: int
    dtype: str
    autocast: str | None
    unit_bytes: int  # one (B, L, d_model) float32 buffer
    tracked_peak_bytes: int
    peak_buffers: int  # most storages of >= one unit alive at once
    measured_peak_bytes: int | None  # VmHWM above the resident set (CPU), max_allocated (CUDA)
    memory_method: str | None
    entries: list[dict[str, Any]]  # at the tracked peak, largest first
    params: dict[str, Any]

    def rows(self, top: int) -> list[dict[str, Any]]:
        """The ``top`` largest groups of identical (site, op, node, shape, dtype)."""
        groups: dict[tuple, dict[str, Any]] = {}
        for entry in self.entries:
            key = (entry["site"], entry["op"], entry["node"], tuple(entry["shape"]), entry["dtype"])
            group = groups.setdefault(key, {**entry, "count": 0, "total_bytes": 0})
            group["count"] += 1
            group["total_bytes"] += entry["nbytes"]
        ranked = sorted(groups.values(), key=lambda g: -g["total_bytes"])
        for group in ranked:
            group["buffers"] = group["total_bytes"] / self.unit_bytes
        return ranked[:top]

    def table(self, top: int = 15) -> str:
        lines = [
            f"one training step, L={self.seq_len}, batch {self.batch}, d_model "
            f"{self.d_model}, {self.n_layers} layers, {self.dtype}"
            + (f", autocast {self.autocast}" if self.autocast else ""),
            f"unit: one (B, L, d_model) float32 buffer = {self.unit_bytes / MIB:.1f} MiB",
            f"tracked peak {self.tracked_peak_bytes / MIB:.1f} MiB = "
            f"{self.tracked_peak_bytes / self.unit_bytes:.2f} buffers (at most "
            f"{self.peak_buffers} storages of >= 1 buffer alive at once)"
            + (
                ""
                if self.measured_peak_bytes is None
                else f"; measured peak {self.measured_peak_bytes / MIB:.1f} MiB "
                f"({self.memory_method})"
            ),
            "",
            "| buffers | MiB | n | shape | dtype | op | autograd node | allocated at |",
            "|---:|---:|---:|---|---|---|---|---|",
        ]
        for row in self.rows(top):
            lines.append(
                f"| {row['buffers']:.2f} | {row['total_bytes'] / MIB:.1f} | "
                f"{row['count']} | {tuple(row['shape'])} | {row['dtype']} | "
                f"{row['op']} | {row['node'] or '-'} | {row['site']} |"
            )
        rest = self.tracked_peak_bytes - sum(r["total_bytes"] for r in self.rows(top))
        lines.append(
            f"| {rest / self.unit_bytes:.2f} | {rest / MIB:.1f} | | (everything else) | | | | |"
        )
        return "\n".join(lines)


def track(fn: Callable[[], Any], unit_bytes: int) -> tuple[StorageTracker, Any]:
    """Run ``fn`` under a :class:`StorageTracker`; returns (tracker, fn's result)."""
    tracker = StorageTracker(unit_bytes)
    with tracker:
        result = fn()
    return tracker, result


def scale_point(
    seq_len: int,
    *,
    n_layers: int = LONG_LAYERS,
    batch: int = 1,
    ff_chunks: int = LONG_FF_CHUNKS,
    device: str = "cpu",
    autocast: str | None = None,
    **size: Any,
) -> Point:
    """The point of the scale suite's long-context model (the "long-context" preset, 2
    layers, the feed-forward in 64 chunks) at one length; ``size``: other model fields,
    e.g. d_model, vocab_size, bucket_size."""
    from suites.grids._common import preset
    from suites.grids.scale import long_context_point
    from suites.harness.suite import GridContext

    ctx = GridContext(device=device)
    model = preset(ctx, "long-context", **size)
    return long_context_point(
        ctx, model, seq_len, n_layers=n_layers, ff_chunks=ff_chunks, batch=batch, autocast=autocast
    )


def ledger_step(point: Point, *, measure: bool = True) -> Ledger:
    """Build the point's step, run one step under the tracker (and the peak meter)."""
    from suites.grids.scale_step import build_scale_step
    from suites.harness.measure import peak_memory

    fix_mmap_threshold()
    params = point.params
    torch.manual_seed(int(params.get("seed", 0)))
    assert point.config is not None and point.workload is not None  # a model point
    step = build_scale_step(params, point.config, point.workload)
    unit = int(params["batch"]) * int(params["seq_len"]) * int(params["d_model"]) * 4

    def run() -> StorageTracker:
        tracker, _ = track(step, unit)
        return tracker

    if measure:
        memory, tracker = peak_memory(run, params["device"])
        measured, method = int(memory["peak_mib"] * MIB), memory["memory_method"]
    else:
        tracker, measured, method = run(), None, None
    entries = sorted((asdict(e) for e in tracker.peak_entries), key=lambda e: -e["nbytes"])
    return Ledger(
        seq_len=int(params["seq_len"]),
        batch=int(params["batch"]),
        d_model=int(params["d_model"]),
        n_layers=int(params["n_layers"]),
        dtype=params.get("dtype", "float32"),
        autocast=params.get("autocast"),
        unit_bytes=unit,
        tracked_peak_bytes=tracker.peak_bytes,
        peak_buffers=tracker.buffers_peak,
        measured_peak_bytes=measured,
        memory_method=method,
        entries=entries,
        params=params,
    )


def ledger_runner(params: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """A harness runner (suites.harness.isolation.run_point): the ledger of one step in a
    fresh child process, after an untracked step on ``options["warm_up"]`` params if given (which
    brings in the code pages and thread stacks a process's first step adds)."""
    from suites.harness.points import Point

    if options.get("warm_up"):
        ledger_step(options["warm_up"], measure=False)
    ledger = ledger_step(
        Point(params=params, config=options["config"], workload=options["workload"])
    )
    return {
        "tracked_peak_bytes": ledger.tracked_peak_bytes,
        "peak_buffers": ledger.peak_buffers,
        "measured_peak_bytes": ledger.measured_peak_bytes,
        "memory_method": ledger.memory_method,
    }


def write(ledger: Ledger, out_dir: Path) -> Path:
    """Write the ledger as JSON under ``out_dir`` (never overwriting one)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = out_dir / f"ledger_L{ledger.seq_len}_{ledger.n_layers}layers_{stamp}.json"
    from suites.harness.environment import environment

    payload = asdict(ledger) | {
        "environment": environment(ledger.params["device"]),
        "timestamp_utc": stamp,
    }
    path.write_text(json.dumps(payload, indent=1, default=str) + "\n")
    return path


def _length(text: str) -> int:
    from suites.harness.lengths import parse_length

    try:
        return parse_length(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m suites.tools.ledger", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--seq-len", type=_length, required=True, help="sequence length: 65536, 2^16 or 64K"
    )
    parser.add_argument("--n-layers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument(
        "--autocast",
        choices=("bfloat16",),
        default=None,
        help="run the step under torch.autocast in this dtype",
    )
    parser.add_argument("--top", type=int, default=15, help="rows of the table")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="write the ledger as JSON into this folder (e.g. results/ledger)",
    )
    args = parser.parse_args(argv)
    point = scale_point(
        args.seq_len, n_layers=args.n_layers, batch=args.batch, autocast=args.autocast
    )
    ledger = ledger_step(point)
    print(ledger.table(args.top))
    if args.out is not None:
        print(f"\nwritten: {write(ledger, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
