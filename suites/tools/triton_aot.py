"""Which Triton calls the benchmarks and the GPU check launch, compiled ahead of time.

The check itself (compile a call's real specialisations for sm_80 / sm_90 without a GPU
and read each binary's registers, spills and shared memory) is
``reformer.lsh.triton.aot``; this module says what to check: the suites' calls on CUDA
(``SUITE_CALLS``, which must not spill), the kernel cases the GPU check runs on the
device (``DEVICE_CASES``, ``device_test_calls``), and every stage's calls
(``stage_calls``), which the GPU check's warm stage compiles before anything is timed.

``python -m suites.tools.triton_aot`` compiles the suites' default calls (and with
``--envelope`` the largest tiles), in parallel, and prints each binary's registers,
spills and shared memory; ``--count`` only counts the distinct binaries; ``--stages``
adds every call of the GPU check (warming its cache); ``--plan N`` times N compiles per
stage here and estimates each stage's cold compile time.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

from reformer.lsh.triton.aot import (
    Binary,
    Call,
    Usage,
    binaries,
    compile_all,
    compiler_process,
    envelope_calls,
    limit_violations,
)

_DTYPE_NAME = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


# What the suites run on CUDA (d_model 256 = 4 heads of 64, bucket_size 64): time and
# peers in bfloat16 with LSH-1 and LSH-4; memory, scale, hashes and reversible in float32
# with 1 to 8 rounds (one binary set for every R >= 2); chunks also at bucket_size 32.
# These must compile without spilling registers to local memory on sm_80 and sm_90.
SUITE_CALLS = (
    Call(torch.bfloat16, n_hashes=4),
    Call(torch.bfloat16, n_hashes=1),
    Call(torch.float32, n_hashes=4),
    Call(torch.float32, n_hashes=1),
    Call(torch.float32, n_hashes=4, bucket_size=32),
)


# The kernel cases the GPU check runs on the device (tests/reformer/lsh_triton_cases.py
# takes them from here): (length, bucket_size, n_hashes, causal, padding, dup) at d_head
# 6 and batch 2, one head; the interpreter runs a wider grid on the CPU.
DEVICE_CASES = (
    (20, 4, 2, True, True, True),
    (20, 8, 2, True, True, False),
    (24, 8, 4, True, True, True),
    (13, 4, 3, False, True, True),
)


def device_test_calls() -> list[Call]:
    """The Triton calls of the GPU check's test stage (tests/reformer/lsh_triton_cases.py
    on the device, and the float32 CUDA cases of tests/reformer/test_lsh.py that auto
    sends to Triton). Only the padded length's divisibility by 16 tells binaries apart,
    so lengths here need only match the tests' in that."""

    def case(dtype, length, c, n, causal, padding, dup) -> Call:
        return Call(
            dtype,
            n,
            bucket_size=c,
            d_head=6,
            seq_len=length,
            batch=2,
            heads=1,
            causal=causal,
            padding=padding or length % c != 0,
            dup=dup,
        )

    calls = [case(torch.float32, *shape) for shape in DEVICE_CASES]
    calls += [
        case(dtype, *shape)
        for dtype in (torch.bfloat16, torch.float16)
        for shape in DEVICE_CASES[:3]
    ]
    calls.append(case(torch.float32, 16, 4, 2, True, True, True))  # bit-identical reruns
    calls += [
        Call(dtype, 4, bucket_size=8, d_head=16, seq_len=32, batch=1, heads=2, dup=dup)
        for dtype in (torch.float32, torch.bfloat16)
        for dup in (True, False)
    ]
    calls.append(Call(torch.float32, 4, bucket_size=16, d_head=16, seq_len=64, batch=1, heads=2))
    calls += [
        Call(torch.float32, n, bucket_size=8, d_head=16, seq_len=64, batch=2, heads=2, dup=dup)
        for n in (1, 2, 4)
        for dup in (True, False)
    ]
    calls += [
        Call(torch.float32, 4, bucket_size=32, d_head=32, seq_len=4096, batch=1, heads=2, dup=dup)
        for dup in (True, False)
    ]
    # tests/suites/harness/test_cuda.py: a quick attention-layer point (2 heads of 32, chunk 32).
    calls += [
        Call(dtype, 4, bucket_size=32, d_head=32, seq_len=1024, heads=2)
        for dtype in (torch.float32, torch.bfloat16)
    ]
    return calls


def stage_calls() -> dict[str, list[Call]]:
    """The Triton calls of each stage of suites/tools/gpu_check.sh that runs kernels."""
    return {
        "gpu-tests": device_test_calls(),
        "kernel-bench": [Call(torch.bfloat16, 4, seq_len=n) for n in (4096, 8192, 16384)],
        "suites": list(SUITE_CALLS),
    }


def _row(binary: Binary, capability: int, used: Usage | str, spill_limit: int | None) -> str:
    if isinstance(used, str):
        return f"| sm_{capability} | {binary} | - | - | - | - | FAILED: {used} |"
    problems = limit_violations(used, capability)
    if spill_limit is not None and used.spill_bytes > spill_limit:
        problems.append(f"spills {used.spill_bytes} B/thread (allowed {spill_limit})")
    verdict = "; ".join(problems) or "ok"
    return (
        f"| sm_{capability} | {binary} | {used.registers} x {used.threads} | "
        f"{used.spill_bytes} | {used.shared_bytes} | {used.seconds:.1f} | {verdict} |"
    )


def _plan(capability: int, sample: int, jobs: int, target_jobs: int) -> int:
    """Per stage of the GPU check: its distinct binaries, and the compile time they take
    cold, estimated from compiles of ``sample`` of each stage's own binaries timed on this
    machine (compile time grows with the tiles, so the tests' small shapes and the
    suites' large ones are timed apart). After the warm stage, which compiles them all,
    the later stages should compile none."""
    stages = stage_calls()
    per_stage = {name: binaries(calls, capability) for name, calls in stages.items()}
    union = binaries([c for calls in stages.values() for c in calls], capability)
    timed: dict[str, list[Binary]] = {}
    seen: set[str] = set()
    for name, found in per_stage.items():
        fresh = [b for b in found if b.key not in seen]
        pick = fresh[:: max(1, len(fresh) // max(1, sample))][: max(1, sample)]
        timed[name] = pick
        seen.update(b.key for b in pick)
    jobs_list = [(b, capability) for picks in timed.values() for b in picks]
    began = time.perf_counter()
    results = iter(compile_all(jobs_list, jobs))
    wall = time.perf_counter() - began
    means: dict[str, float] = {}
    for name, picks in timed.items():
        seconds = [u.seconds for u in (next(results) for _ in picks) if not isinstance(u, str)]
        if not seconds:
            print(f"no sample compile of {name} succeeded")
            return 1
        means[name] = sum(seconds) / len(seconds)
        print(
            f"compile time measured here, {name}: {len(seconds)} of its {len(per_stage[name])} "
            f"sm_{capability} binaries, mean {means[name]:.1f} s "
            f"({min(seconds):.1f}-{max(seconds):.1f} s)"
        )
    print(
        f"({len(jobs_list)} compiles, {wall:.1f} s wall with {jobs} jobs on {os.cpu_count()} CPUs)"
    )
    print(f"| stage | binaries | cold, 1 job | cold, {target_jobs} jobs | compiled after warm |")
    print("|---|---|---|---|---|")
    owner: dict[str, str] = {}
    for name, found in per_stage.items():
        for b in found:
            owner.setdefault(b.key, name)
    warm_serial = sum((means[owner[b.key]] for b in union), 0.0)
    widest = max(means.values())
    print(
        f"| warm | {len(union)} | {warm_serial:.0f} s | "
        f"{max(warm_serial / target_jobs, widest):.0f} s | - |"
    )
    for name, found in per_stage.items():
        serial = len(found) * means[name]
        parallel = max(serial / target_jobs, means[name])
        print(f"| {name} | {len(found)} | {serial:.0f} s | {parallel:.0f} s | 0 |")
    print(
        "Estimates: compile counts times the mean compile time measured here; a GPU "
        "machine's CPUs compile at their own speed. The stages after warm load every "
        "binary from TRITON_CACHE_DIR (same specialisation, same cache key)."
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m suites.tools.triton_aot", description=__doc__)
    parser.add_argument("--capability", default="80,90", help="e.g. 90, or 80,90")
    parser.add_argument("--envelope", action="store_true", help="also the largest tiles")
    parser.add_argument(
        "--stages", action="store_true", help="also every call of the GPU check (warms it)"
    )
    parser.add_argument("--jobs", type=int, default=2, help="compiles in parallel")
    parser.add_argument("--count", action="store_true", help="count binaries, compile none")
    parser.add_argument("--load", action="store_true", help="load each on this GPU too")
    parser.add_argument(
        "--plan",
        type=int,
        default=None,
        metavar="N",
        help="time N compiles here and estimate each GPU-check stage's compiles from them",
    )
    parser.add_argument("--target-jobs", type=int, default=16, help="CPUs of the GPU machine")
    parser.add_argument(
        "--dtypes", default=None, help="only calls in these dtypes, e.g. bfloat16,float32"
    )
    args = parser.parse_args(argv)
    compiler_process()
    capabilities = [int(x) for x in args.capability.split(",") if x.strip()]
    if args.plan is not None:
        return _plan(capabilities[0], args.plan, args.jobs, args.target_jobs)
    calls = list(SUITE_CALLS)
    if args.dtypes:
        keep = {_DTYPE_NAME[x.strip()] for x in args.dtypes.split(",")}
        calls = [c for c in calls if c.dtype in keep]
    if args.envelope:
        calls += envelope_calls()
    # The test stage's shapes are compiled to warm the cache; a spill there is reported,
    # not failed (only shipped configurations must not spill).
    extra = [c for stage in stage_calls().values() for c in stage] if args.stages else []
    # Options (and so binaries) differ between targets: each capability has its own list.
    suite = {cap: binaries(calls, cap) for cap in capabilities}
    others = {
        cap: [b for b in binaries(extra, cap) if b.key not in {s.key for s in suite[cap]}]
        for cap in capabilities
    }
    for cap in capabilities:
        print(
            f"sm_{cap}: {len(suite[cap])} distinct binaries for the suites' calls"
            + (" and the largest tiles" if args.envelope else "")
            + f", {len(others[cap])} more for the GPU check's other calls",
            flush=True,
        )
    if args.count:
        return 0
    jobs = [(b, cap) for cap in capabilities for b in suite[cap] + others[cap]]
    began = time.perf_counter()
    results = compile_all(jobs, args.jobs, load=args.load)
    print("| GPU | kernel [call] | regs x threads | spill B | shared B | compile s | verdict |")
    print("|---|---|---|---|---|---|---|")
    failed = False
    for (binary, cap), used in zip(jobs, results, strict=True):
        row = _row(binary, cap, used, spill_limit=0 if binary in suite[cap] else None)
        failed |= not row.endswith("| ok |")
        print(row, flush=True)
    print(f"{len(jobs)} compiles in {time.perf_counter() - began:.1f} s with {args.jobs} jobs")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
