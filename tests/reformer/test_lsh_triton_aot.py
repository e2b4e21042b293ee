"""Ahead-of-time compilation of every shipped LSH kernel variant for sm_80 (A100) and
sm_90 (H100/H200), on a machine without a GPU, against the devices' per-block limits."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import pytest
import torch

pytest.importorskip("triton")

from reformer.backends import TRITON_MAX_CHUNK, TRITON_MAX_HEAD  # noqa: E402
from reformer.kernels.aot import (  # noqa: E402
    compile_variant,
    compiler_process,
    limit_violations,
    shipped_variants,
)
from reformer.kernels.config import kernel_config  # noqa: E402

CAPABILITIES = (80, 90)


def _compile(job):
    variant, capability = job
    return compile_variant(variant, capability)


@pytest.fixture(scope="module")
def usage():
    """Compiles run in fresh processes (two at a time): they must not see TRITON_INTERPRET."""
    jobs = [(variant, capability) for variant in shipped_variants() for capability in CAPABILITIES]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        max_workers=2, mp_context=context, initializer=compiler_process
    ) as pool:
        return dict(zip(jobs, pool.map(_compile, jobs), strict=True))


@pytest.mark.slow  # minutes on a busy 2-core machine: 36 compiles, some with large tiles
@pytest.mark.parametrize("capability", CAPABILITIES)
def test_every_shipped_variant_fits_the_device(usage, capability):
    report, problems = [], []
    for (variant, cap), used in usage.items():
        if cap != capability:
            continue
        report.append(
            f"sm_{cap} {variant}: {used.shared_bytes} B shared, {used.registers} "
            f"regs x {used.threads} threads, {used.spill_bytes} B stack"
        )
        problems += [f"sm_{cap} {variant}: {p}" for p in limit_violations(used, cap)]
    print("\n".join(report))
    assert report
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_every_launch_lies_inside_the_compiled_envelope(dtype):
    """Resource use grows with the tiles each thread holds; every configuration a call can
    get holds no more per thread than the largest compiled one, and no tile is smaller
    than the smallest compiled one."""
    largest = kernel_config(TRITON_MAX_CHUNK, TRITON_MAX_HEAD[dtype], TRITON_MAX_HEAD[dtype], dtype)
    smallest = kernel_config(1, 1, 1, dtype)

    def per_thread(config):
        width = max(config.block_c, config.block_d, config.block_dv)
        return config.block_c * width / (32 * config.num_warps)

    for chunk in range(1, TRITON_MAX_CHUNK + 1):
        for dim in range(1, TRITON_MAX_HEAD[dtype] + 1, 7):
            config = kernel_config(chunk, dim, dim, dtype)
            assert per_thread(config) <= per_thread(largest)
            assert min(config.block_c, config.block_d) >= min(smallest.block_c, smallest.block_d)
            assert config.precision == largest.precision
