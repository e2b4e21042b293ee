"""Ahead-of-time compilation of the LSH kernels for a GPU that is not there.

``triton.compile(ASTSource(...), target=GPUTarget("cuda", 90, 32))`` builds PTX and a
cubin on a machine without a GPU. This catches what Triton's CPU interpreter forgives
(tl.dot shape and dtype rules, shared-memory overflow, register pressure and spills).
Registers and spills come from the cubin (``cuobjdump -res-usage``, shipped with triton):
the compiled kernel only learns them from the driver when loaded.

What is compiled is what runs. At launch Triton specialises on the arguments: a pointer
aligned to 16 bytes and an int divisible by 16 get a divisibility attribute, an int equal
to 1 becomes a constant, and each combination is its own binary with its own registers.
So a call is described by its shapes (``Call``), its launches are built by the same
functions the autograd Function uses (``forward_launches``, ``backward_launches``) on
meta tensors, and each launch is specialised by Triton's own binder for the target; the
source and options handed to ``triton.compile`` are the ones a launch on that GPU would
compile, so the cache key is the same too: compiling them into ``TRITON_CACHE_DIR`` on the
GPU machine warms the cache the kernels then load from.

``python -m reformer.lsh.triton.aot`` compiles the suites' default calls (and with
``--envelope`` the largest tiles), in parallel, and prints each binary's registers,
spills and shared memory; ``--count`` only counts the distinct binaries.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import torch

from reformer.lsh.dispatch import TRITON_MAX_BUCKET_SIZE, TRITON_MAX_HEAD
from reformer.lsh.layout import Layout

_TRITON_DTYPE = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32"}
_DTYPE_NAME = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
# Per-block limits: shared memory (opt-in maximum) and the register file.
SHARED_LIMIT = {80: 163 * 1024, 90: 227 * 1024}
MAX_REGISTERS_PER_THREAD = 255
REGISTERS_PER_BLOCK = 64 * 1024
CAPABILITIES = (80, 90)


@dataclass(frozen=True)
class Call:
    """The shapes of one LSH attention call through the Triton kernels: qk and v
    (batch, heads, seq_len, d_head), ``n_hashes`` rounds, chunks of ``bucket_size``."""

    dtype: torch.dtype
    n_hashes: int
    bucket_size: int = 64
    d_head: int = 64
    seq_len: int = 4096
    batch: int = 1
    heads: int = 4
    causal: bool = True
    padding: bool = False  # a key_valid mask (padding, or L not a multiple of bucket_size)
    dup: bool = True  # duplicate correction

    def layout(self) -> Layout:
        padded = -(-self.seq_len // self.bucket_size) * self.bucket_size
        return Layout(
            batch=self.batch,
            n_heads=self.heads,
            n_hashes=self.n_hashes,
            padded_len=padded,
            bucket_size=self.bucket_size,
            causal=self.causal,
            dup_correction=self.dup,
            scale=self.d_head**-0.5,
        )

    def __str__(self) -> str:
        return (
            f"{_TRITON_DTYPE[self.dtype]} c{self.bucket_size} d{self.d_head} R{self.n_hashes}"
            f"{' causal' if self.causal else ''}{' padded' if self.padding else ''}"
            f"{'' if self.dup else ' no-dup'}"
        )


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
    # tests/suites/test_cuda.py: a quick attention-layer point (2 heads of 32, chunk 32).
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


def envelope_calls() -> list[Call]:
    """The largest tiles each dtype takes with every optional branch on (padding, causal,
    duplicate counts, look-back): they too must fit the device and not spill."""
    return [
        Call(
            dtype,
            n_hashes=4,
            bucket_size=TRITON_MAX_BUCKET_SIZE,
            d_head=TRITON_MAX_HEAD[dtype],
            padding=True,
        )
        for dtype in _TRITON_DTYPE
    ]


@dataclass(frozen=True)
class Binary:
    """One distinct compiled kernel: what Triton's binder makes of a launch."""

    kernel: str
    call: Call  # the first call that launches it
    key: str  # signature, constants and attributes, as the runtime sees them
    label: str  # what tells it apart from the call's other binaries of the kernel

    def __str__(self) -> str:
        return f"{self.kernel}[{self.call}]{self.label}"


@dataclass(frozen=True)
class Usage:
    shared_bytes: int  # dynamic (Triton's) plus static shared memory per block
    registers: int  # per thread
    spill_bytes: int  # stack frame per thread (register spills)
    threads: int
    seconds: float  # wall time of the compile


def compiler_process() -> None:
    """Initialiser of a process that compiles: under TRITON_INTERPRET=1 ``triton.jit``
    would build interpreter functions, which cannot be compiled. Runs before the kernels
    are imported (they are imported lazily below)."""
    os.environ.pop("TRITON_INTERPRET", None)


def _meta_launches(call: Call, capability: int) -> list[tuple[Any, tuple[int], tuple, dict]]:
    """The launches of one forward and backward of ``call`` on an sm_<capability> GPU,
    on meta tensors."""
    from reformer.lsh.triton.config import kernel_config
    from reformer.lsh.triton.function import backward_launches, forward_buffers, forward_launches

    layout = call.layout()
    config = kernel_config(call.bucket_size, call.d_head, call.d_head, call.dtype, capability)
    shape = (call.batch, call.heads, layout.padded_len, call.d_head)
    qk = torch.empty(shape, dtype=call.dtype, device="meta")
    sort_idx = torch.empty((*shape[:2], call.n_hashes, shape[2]), dtype=torch.long, device="meta")
    key_valid = (
        torch.empty((call.batch, shape[2]), dtype=torch.bool, device="meta")
        if call.padding
        else None
    )
    qk, v, sort32, chunk_of, valid, out, row_max, row_sum = forward_buffers(
        qk, qk, sort_idx, key_valid, layout
    )
    launches = forward_launches(
        qk, v, sort32, chunk_of, valid, out, row_max, row_sum, layout, config, call.padding
    )
    grads = torch.empty(shape, dtype=torch.float32, device="meta")
    launches += backward_launches(
        qk,
        v,
        qk,
        sort32,
        chunk_of,
        valid,
        row_max,
        row_max,
        row_max,
        grads,
        grads,
        grads,
        layout,
        config,
        call.padding,
    )
    return launches


def _runtime_source(kernel, args: tuple, keywords: dict, capability: int):
    """(ASTSource, options) that ``kernel[grid](*args, **keywords)`` compiles on an
    sm_<capability> GPU: Triton 3.9's ``JITFunction.run`` up to the compile, with the
    target given instead of asked of a driver."""
    from triton import knobs
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource, make_backend
    from triton.runtime.jit import create_function_from_signature

    backend = make_backend(GPUTarget("cuda", capability, 32))
    keywords = dict(keywords)
    keywords["debug"] = keywords.get("debug", kernel.debug) or knobs.runtime.debug
    keywords["instrumentation_mode"] = knobs.compilation.instrumentation_mode
    keywords["fpsan_homomorphic_casts"] = knobs.compilation.fpsan_homomorphic_casts
    binder = create_function_from_signature(kernel.signature, kernel.params, backend)
    bound, specialization, options = binder(*args, **keywords)
    options, signature, constexprs, attrs = kernel._pack_args(
        backend, keywords, bound, specialization, options
    )
    return ASTSource(kernel, signature, constexprs, attrs), options


def _key(kernel, source) -> str:
    names = list(kernel.arg_names)
    constexprs = {names[path[0]]: value for path, value in source.constants.items()}
    attrs = {names[path[0]]: value for path, value in source.attrs.items() if value}
    return f"signature={source.signature} constexprs={constexprs} attrs={attrs}"


def _label(kernel, source) -> str:
    """The round's mark (first round) and any launch integer Triton made a constant or
    gave a divisibility attribute (rnd=1, rnd%16: what do_not_specialize removes)."""
    names = list(kernel.arg_names)
    parts = []
    for path, value in source.constants.items():
        name = names[path[0]]
        if name == "FIRST" and value:
            parts.append("first round")
        elif name.islower():
            parts.append(f"{name}={value}")
    for path, value in source.attrs.items():
        name = names[path[0]]
        if value and name in ("rnd", "n_heads", "n_rounds", "chunks_per_round", "total"):
            parts.append(f"{name}%16")
    return (" " + ", ".join(parts)) if parts else ""


def binaries(calls: Iterable[Call], capability: int = 90) -> list[Binary]:
    """The distinct binaries the calls' launches compile, in launch order."""
    found: dict[tuple[str, str], Binary] = {}
    for call in calls:
        for kernel, _, args, keywords in _meta_launches(call, capability):
            source, options = _runtime_source(kernel, args, keywords, capability)
            name = kernel.fn.__name__
            key = _key(kernel, source) + f" options={sorted(options.__dict__.items())}"
            found.setdefault((name, key), Binary(name, call, key, _label(kernel, source)))
    return list(found.values())


def compile_binary(binary: Binary, capability: int, load: bool = False) -> Usage:
    """Compile one binary for sm_<capability> (into the Triton cache) and read its
    resource use; ``load`` also loads it on this machine's GPU (registers and spills as
    the driver reports them must agree with the cubin's)."""
    import triton
    from triton.backends.compiler import GPUTarget

    began = time.perf_counter()
    for kernel, _, args, keywords in _meta_launches(binary.call, capability):
        if kernel.fn.__name__ != binary.kernel:
            continue
        source, options = _runtime_source(kernel, args, keywords, capability)
        key = _key(kernel, source) + f" options={sorted(options.__dict__.items())}"
        if key != binary.key:
            continue
        compiled = triton.compile(
            source, target=GPUTarget("cuda", capability, 32), options=options.__dict__
        )
        registers, stack, static_shared = _cubin_usage(compiled.asm["cubin"])
        if load:
            compiled._init_handles()
            registers, stack = compiled.n_regs, max(stack, compiled.n_spills)
        return Usage(
            shared_bytes=compiled.metadata.shared + static_shared,
            registers=registers,
            spill_bytes=stack,
            threads=32 * options.num_warps,
            seconds=time.perf_counter() - began,
        )
    raise LookupError(f"no launch of {binary.call} compiles {binary.kernel} as {binary.key}")


def _cubin_usage(cubin: bytes) -> tuple[int, int, int]:
    import triton

    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as file:
        file.write(cubin)
        file.flush()
        report = subprocess.run(
            [tool, "-res-usage", file.name], capture_output=True, text=True, check=True
        ).stdout
    found = re.search(r"REG:(\d+) STACK:(\d+) SHARED:(\d+)", report)
    if found is None:
        raise RuntimeError(f"no resource usage in cuobjdump's report:\n{report}")
    registers, stack, shared = (int(x) for x in found.groups())
    return registers, stack, shared


def limit_violations(usage: Usage, capability: int) -> list[str]:
    """What exceeds the device's per-block limits (empty when it fits)."""
    problems = []
    if usage.shared_bytes > SHARED_LIMIT[capability]:
        problems.append(f"shared memory {usage.shared_bytes} B > {SHARED_LIMIT[capability]} B")
    if usage.registers > MAX_REGISTERS_PER_THREAD:
        problems.append(f"{usage.registers} registers/thread > {MAX_REGISTERS_PER_THREAD}")
    if usage.registers * usage.threads > REGISTERS_PER_BLOCK:
        problems.append(
            f"{usage.registers} registers x {usage.threads} threads > {REGISTERS_PER_BLOCK}"
        )
    return problems


def _compile_job(job: tuple[Binary, int, bool]) -> Usage:
    binary, capability, load = job
    return compile_binary(binary, capability, load)


def compile_all(
    jobs: list[tuple[Binary, int]], workers: int, load: bool = False
) -> list[Usage | str]:
    """Compile in ``workers`` fresh processes (they must not see TRITON_INTERPRET); a
    failed compile is its error text, so the others still report."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        max_workers=max(1, workers), mp_context=context, initializer=compiler_process
    ) as pool:
        futures = [pool.submit(_compile_job, (b, cap, load)) for b, cap in jobs]
        results: list[Usage | str] = []
        for future in futures:
            try:
                results.append(future.result())
            except Exception as exc:  # reported per binary
                results.append(f"{type(exc).__name__}: {str(exc)[:300]}")
        return results


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
    parser = argparse.ArgumentParser(prog="python -m reformer.lsh.triton.aot", description=__doc__)
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
