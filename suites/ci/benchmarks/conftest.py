"""Benchmarks for the CI ratio gates; run only when ``suites/ci/benchmarks`` is named.

The default ``python -m pytest`` (testpaths = tests) does not collect these files, and a run
that collects them without naming this folder (``pytest .``) skips them, so unit-test runs
stay fast and CI never runs the slow benchmarks twice. They run when the
command line names this directory or a file or test in it, which is what
``python -m suites.ci`` does:

    python -m pytest suites/ci/benchmarks --benchmark-json=PATH

Each benchmark times two steps interleaved in the same process (suites.ci.timing) and stores
the ratio of their medians, with this run's noise band, in the benchmark's ``extra_info``;
``python -m suites.ci`` reads it from the JSON and gates it against results/ci/baseline.json.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from suites.ci.timing import interleaved_round, ratio_of_medians

BENCH_DIR = Path(__file__).resolve().parent
# One intra-op thread. On a shared 2-core machine, two OpenMP threads must be scheduled
# together at every barrier; when other jobs compete, a step made of many small ops (the
# LSH kernel) waits at barriers far more than one made of a few large ones (full attention),
# so the ratio itself moved 15x with the machine's load (0.14 at one thread, 2.2 at two, in
# the same minute). With one thread, load slows both steps alike and the ratio holds.
BENCH_THREADS = 1
# glibc mallopt parameters: keep freed memory in the heap instead of returning it to the OS.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_INT_MAX = 2**31 - 1


def retain_freed_memory() -> str:
    """Make glibc keep freed memory mapped, so a step's buffers do not page-fault afresh.

    By default glibc serves every block over 32 MiB by mmap and unmaps it on free, so full
    attention at 8K page-faulted 2 GiB per call (560K faults, 45% of its CPU time spent in
    the kernel zeroing pages), a cost set by the VM and its load rather than by our code.
    Once the heap has grown (the untimed and warm-up calls), no call faults. Memory
    growth is gated separately, and deterministically, by the saved-bytes figures.
    Returns what the allocator does now.
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        done = libc is not None and all(
            libc.mallopt(param, _INT_MAX) == 1 for param in (_M_MMAP_THRESHOLD, _M_TRIM_THRESHOLD)
        )
    except (OSError, AttributeError):  # not glibc: keep the platform's default allocator
        done = False
    return "glibc: freed memory retained" if done else "default allocator"


def _bench_requested(config: pytest.Config) -> bool:
    base = Path(config.invocation_params.dir)
    for arg in config.args:
        path = (base / arg.split("::", 1)[0]).resolve()
        if path == BENCH_DIR or BENCH_DIR in path.parents:
            return True
    return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _bench_requested(config):
        return
    skip = pytest.mark.skip(
        reason="CI ratio benchmarks run only when suites/ci/benchmarks is "
        "named (python -m suites.ci, or python -m pytest "
        "suites/ci/benchmarks)"
    )
    for item in items:
        if BENCH_DIR in Path(str(item.path)).resolve().parents:
            item.add_marker(skip)


@pytest.fixture
def ratio_benchmark(benchmark) -> Iterator[Callable[..., dict[str, Any]]]:
    """measure(figure, numerator, denominator, *, rounds, warmup, params) -> extra_info.

    ``numerator`` and ``denominator`` are (label, step) pairs, a step being a no-argument
    callable, built inside the test (so after the thread count is pinned to BENCH_THREADS
    and the allocator set by retain_freed_memory). Steps are timed in process CPU seconds
    (suites.ci.timing); pytest-benchmark's own statistics are the wall time of one
    interleaved round (both steps). The ratio of medians and its bootstrap band go to
    ``extra_info``.
    """

    def measure(
        figure: str,
        numerator: tuple[str, Callable[[], None]],
        denominator: tuple[str, Callable[[], None]],
        *,
        rounds: int,
        warmup: int,
        params: dict[str, Any],
    ) -> dict[str, Any]:
        times: tuple[list[float], list[float]] = ([], [])
        run_round = interleaved_round((numerator[1], denominator[1]), times)
        benchmark.pedantic(run_round, rounds=rounds, warmup_rounds=warmup, iterations=1)
        num_threads = torch.get_num_threads()
        # pedantic runs the warm-up rounds first, through the same callable: drop them.
        numerator_s, denominator_s = (series[len(series) - rounds :] for series in times)
        summary = ratio_of_medians(numerator_s, denominator_s)
        info = {
            "figure": figure,
            "numerator": numerator[0],
            "denominator": denominator[0],
            "allocator": allocator,
            "clock": "time.process_time",
            **summary.as_dict(),
            "numerator_times_s": numerator_s,
            "denominator_times_s": denominator_s,
            "warmup_rounds": warmup,
            "num_threads": num_threads,
            "params": params,
        }
        benchmark.extra_info.update(info)
        return info

    allocator = retain_freed_memory()
    previous = torch.get_num_threads()
    torch.set_num_threads(BENCH_THREADS)
    try:
        yield measure
    finally:
        torch.set_num_threads(previous)
