"""Ahead-of-time compilation of the LSH kernels for sm_80 (A100) and sm_90 (H100/H200),
on a machine without a GPU: the binaries compiled are those a launch would build on the
device (Triton's own specialisation of the real launch arguments), the suites' default
calls compile without spilling, and the largest tiles fit the devices' per-block limits."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")

from reformer.lsh.dispatch import TRITON_MAX_BUCKET_SIZE, TRITON_MAX_HEAD  # noqa: E402
from reformer.lsh.triton.aot import (  # noqa: E402
    CAPABILITIES,
    Call,
    binaries,
    compile_all,
    envelope_calls,
    limit_violations,
)
from reformer.lsh.triton.config import kernel_config  # noqa: E402
from suites.tools.triton_aot import SUITE_CALLS  # noqa: E402


@pytest.mark.parametrize("capability", CAPABILITIES)
def test_a_call_compiles_one_binary_per_kernel_and_round_kind(capability):
    """Four rounds launch the forward 4 times and each backward kernel 4 times; the round
    index and the head, round and chunk counts must not be specialised (an int equal to 1
    becomes a constant, one divisible by 16 an attribute: other binaries, other
    registers), so the call compiles the forward's first and merging rounds and one of
    each backward kernel, and nothing the ahead-of-time check did not."""
    found = binaries([Call(torch.bfloat16, n_hashes=4)], capability)
    assert sorted(b.kernel for b in found) == [
        "lsh_backward_key_round",
        "lsh_backward_query_round",
        "lsh_forward_round",
        "lsh_forward_round",
    ], [str(b) for b in found]
    assert all(b.label in ("", " first round") for b in found), [str(b) for b in found]
    # More heads, rounds and length, the same divisibility: the same binaries.
    other = binaries([Call(torch.bfloat16, n_hashes=8, heads=1, seq_len=8192)], capability)
    assert {b.key for b in other} == {b.key for b in found}


def test_pointers_are_compiled_aligned_as_the_launches_pass_them():
    found = binaries([Call(torch.float32, n_hashes=2)])
    for binary in found:
        for name in ("QK", "V", "SORT"):
            assert f"'{name}': [['tt.divisibility', 16]]" in binary.key, binary.key


def _usage(calls_of, capability):
    jobs = [(b, capability) for b in calls_of(capability)]
    return list(zip(jobs, compile_all(jobs, workers=2), strict=True))


@pytest.mark.slow  # about a minute per capability on a busy 2-core machine
@pytest.mark.parametrize("capability", CAPABILITIES)
def test_the_suites_calls_compile_without_spilling(capability):
    """What the suites run on CUDA must not spill registers to local memory (a spill is
    a round trip to local memory per use, in kernels already bound by latency)."""
    report, problems = [], []
    for (binary, cap), used in _usage(lambda cap: binaries(SUITE_CALLS, cap), capability):
        assert not isinstance(used, str), f"{binary}: {used}"
        report.append(
            f"sm_{cap} {binary}: {used.registers} regs x {used.threads}, "
            f"{used.spill_bytes} B spilled, {used.shared_bytes} B shared"
        )
        problems += [f"sm_{cap} {binary}: {p}" for p in limit_violations(used, cap)]
        if used.spill_bytes:
            problems.append(f"sm_{cap} {binary}: spills {used.spill_bytes} B per thread")
    print("\n".join(report))
    assert report
    assert not problems, "\n".join(problems)


@pytest.mark.slow
@pytest.mark.parametrize("capability", CAPABILITIES)
def test_the_largest_tiles_fit_the_device_without_spilling(capability):
    problems = []
    for (binary, cap), used in _usage(lambda cap: binaries(envelope_calls(), cap), capability):
        assert not isinstance(used, str), f"{binary}: {used}"
        print(f"sm_{cap} {binary}: {used}")
        problems += [f"sm_{cap} {binary}: {p}" for p in limit_violations(used, cap)]
        if used.spill_bytes:
            problems.append(f"sm_{cap} {binary}: spills {used.spill_bytes} B per thread")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_every_launch_lies_inside_the_compiled_envelope(dtype):
    """Resource use grows with the tiles each thread holds; every configuration a call can
    get holds no more per thread than the largest compiled one."""
    largest = kernel_config(
        TRITON_MAX_BUCKET_SIZE, TRITON_MAX_HEAD[dtype], TRITON_MAX_HEAD[dtype], dtype
    )

    def per_thread(config):
        width = max(config.block_c, config.block_d, config.block_dv)
        return config.block_c * width / (32 * config.num_warps)

    assert largest.block_q <= largest.block_c and largest.block_c % largest.block_q == 0

    for chunk in range(1, TRITON_MAX_BUCKET_SIZE + 1):
        for dim in range(1, TRITON_MAX_HEAD[dtype] + 1, 7):
            config = kernel_config(chunk, dim, dim, dtype)
            assert per_thread(config) <= per_thread(largest)
            assert config.precision == largest.precision
