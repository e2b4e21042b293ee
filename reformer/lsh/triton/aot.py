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

This module is the check itself: ``binaries`` lists what a set of calls compiles,
``compile_all`` compiles them in parallel and reports each one's resource use, and
``limit_violations`` compares that with the device's per-block limits. Which calls to
check (the suites', the GPU check's stages) and the command line that prints the table
live with the benchmarks, in ``suites/tools/triton_aot.py``.
"""

from __future__ import annotations

import os
import re
import subprocess
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
