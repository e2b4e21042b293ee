"""Autograd Function around the fused CPU kernel (Reformer sec. 2; backward recomputes the
weights from saved row statistics, as FlashAttention does, Dao et al. 2022, sec. 3.1): the
C twin of ``reformer.lsh.torch_path.LSHAttentionFunction``, with the same inputs and semantics.

Saved for backward, as by the torch path: qk, v, the sort permutation, key_valid, the
output and two float32 statistics per position (row maximum over all rounds in base 2, row
sum). The chunk ids of the duplicate correction are rebuilt from the permutation.

Launches: forward, one per round over every (batch·head, chunk); backward, per round, the
key chunks in three phases (even chunks, odd chunks, the round's last chunk), because the
item that owns key chunk g also adds dQ to query chunks g and g+1, and items of one phase
never share a query chunk. Within a launch the calling threads (``torch.get_num_threads()``
of them, the GIL released by ctypes) claim items from one counter.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait

import torch

from reformer.lsh.cpu.build import Args, load_kernel
from reformer.lsh.layout import Layout, chunk_ids, row_dot, sequence_major

_pool: ThreadPoolExecutor | None = None
_pool_key: tuple[int, int] = (0, 0)  # (process id, size) the pool was made for
# Held while the pool is looked up or remade and work submitted to it: without it, one
# thread's torch.set_num_threads could shut the pool down between another thread's getting
# it and submitting ("cannot schedule new futures after shutdown").
_pool_lock = threading.RLock()
# Stored into a launch's item counter to stop its threads claiming more items.
_NO_MORE_ITEMS = 1 << 62


def _reset_lock_in_child() -> None:
    # A thread of the parent may have held the lock at the fork; it does not exist here.
    global _pool_lock
    _pool_lock = threading.RLock()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_reset_lock_in_child)


def _threads() -> int:
    return max(1, torch.get_num_threads())


def _executor(size: int) -> ThreadPoolExecutor:
    """The worker threads, made again when the size changes or in a forked child (a
    DataLoader worker, say): a child inherits the pool object but not its threads, and
    work submitted to it would wait forever."""
    global _pool, _pool_key
    with _pool_lock:
        key = (os.getpid(), size)
        if _pool is None or _pool_key != key:
            if _pool is not None and _pool_key[0] == key[0]:
                _pool.shutdown(wait=False)  # work already submitted to it still runs
            _pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="lsh-cpu")
            _pool_key = key
        return _pool


def _submit(size: int, work: Callable[..., int], call: tuple, futures: list[Future]) -> None:
    """Submit ``work(*call)`` ``size`` times, appending each future to ``futures`` as it is
    made (so an interrupt part-way leaves every submitted one there to wait for)."""
    with _pool_lock:
        pool = _executor(size)
        for _ in range(size):
            futures.append(pool.submit(work, *call))


def _wait_for_all(futures: list[Future]) -> None:
    """Wait until every future is done, through further interrupts: each worker finishes
    the item it holds (one chunk), so this is short."""
    while True:
        try:
            wait(futures)
            return
        except KeyboardInterrupt:
            continue


def _launch(args: Args, backward: bool, rnd: int, first: int, step: int, stop: int) -> None:
    """Run items (bh, n) for n in range(first, stop, step) of round ``rnd`` on every thread."""
    if first >= stop:
        return
    run = load_kernel().lsh_cpu_run
    counter = ctypes.c_int64(0)
    call = (ctypes.byref(args), int(backward), rnd, first, step, stop, ctypes.byref(counter))
    threads = _threads()
    if threads == 1:
        codes = [run(*call)]
    else:
        futures: list[Future] = []
        try:
            _submit(threads - 1, run, call, futures)
            codes = [run(*call)] + [future.result() for future in futures]
        except BaseException:
            # The workers write through raw pointers into tensors that the unwinding frames
            # free: stop them claiming items, and let the exception (a KeyboardInterrupt,
            # say) go on only once every one has returned.
            counter.value = _NO_MORE_ITEMS
            _wait_for_all(futures)
            raise
    if any(code != 0 for code in codes):
        raise MemoryError("the fused CPU LSH kernel could not allocate its scratch buffers")


def _strides(x: torch.Tensor) -> tuple[int, int, int]:
    return x.stride(0), x.stride(1), x.stride(2)


def _dense_rows(x: torch.Tensor) -> torch.Tensor:
    """x with a contiguous last dimension (the kernel reads whole rows)."""
    return x if x.stride(-1) == 1 else x.contiguous()


def _args(qk, v, sort_idx, chunk_of, key_valid, layout: Layout) -> Args:
    args = Args(
        batch=layout.batch,
        heads=layout.n_heads,
        length=layout.padded_len,
        dim=qk.shape[-1],
        dim_v=v.shape[-1],
        rounds=layout.n_hashes,
        bucket_size=layout.bucket_size,
        chunks_per_round=layout.chunks_per_round,
        total=layout.total_chunks,
        causal=int(layout.causal),
        has_valid=int(key_valid is not None),
        counts=int(layout.needs_counts),
        look_back=int(layout.look_back),
        scale=layout.scale,
    )
    args.qk = qk.data_ptr()
    args.qk_sb, args.qk_sh, args.qk_sl = _strides(qk)
    args.v = v.data_ptr()
    args.v_sb, args.v_sh, args.v_sl = _strides(v)
    args.sort = sort_idx.data_ptr()
    args.chunk_of = chunk_of.data_ptr() if chunk_of is not None else None
    args.valid = key_valid.data_ptr() if key_valid is not None else None
    return args


def _inputs(qk, v, sort_idx, key_valid, layout: Layout):
    qk, v = _dense_rows(qk), _dense_rows(v)
    sort_idx = sort_idx.contiguous()
    chunk_of = chunk_ids(sort_idx, layout).contiguous() if layout.needs_counts else None
    valid = key_valid.contiguous() if key_valid is not None else None  # bool: one byte each
    return qk, v, sort_idx, chunk_of, valid


class CpuLSHFunction(torch.autograd.Function):
    """out (B, H, Lp, Dv) = LSH attention of padded float32 CPU tensors qk (B, H, Lp, D) and
    v (B, H, Lp, Dv), given ``sort_idx`` (B, H, R, Lp) int64 and ``key_valid`` (B, Lp) bool
    or None, as ``LSHAttentionFunction``."""

    @staticmethod
    def forward(ctx, qk, v, sort_idx, key_valid, layout: Layout):
        qk, v, sort_idx, chunk_of, valid = _inputs(qk, v, sort_idx, key_valid, layout)
        out = sequence_major(v.shape, torch.float32, v.device)
        row_max = torch.empty(qk.shape[:3], dtype=torch.float32)
        row_sum = torch.empty_like(row_max)
        args = _args(qk, v, sort_idx, chunk_of, valid, layout)
        args.out = out.data_ptr()
        args.out_sb, args.out_sh, args.out_sl = _strides(out)
        args.row_max, args.row_sum = row_max.data_ptr(), row_sum.data_ptr()
        for rnd in range(layout.n_hashes):
            _launch(args, False, rnd, 0, 1, layout.chunks_per_round)
        ctx.layout = layout
        ctx.save_for_backward(qk, v, sort_idx, key_valid, out, row_max, row_sum)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        qk, v, sort_idx, key_valid, out, row_max, row_sum = ctx.saved_tensors
        layout: Layout = ctx.layout
        qk, v, sort_idx, chunk_of, valid = _inputs(qk, v, sort_idx, key_valid, layout)
        grad_out = _dense_rows(grad_out.to(torch.float32))
        delta = row_dot(grad_out, out, torch.float32)  # (B, H, Lp): rowsum(dO · O)
        # A row that saw no key (all padding) has sum 0 and all-zero weights: 1/sum is 0.
        inv_sum = torch.where(row_sum > 0, row_sum.reciprocal(), 0.0)
        grad_q = sequence_major(qk.shape, torch.float32, qk.device, zero=True)
        grad_v = sequence_major(v.shape, torch.float32, v.device, zero=True)
        args = _args(qk, v, sort_idx, chunk_of, valid, layout)
        args.row_max = row_max.data_ptr()
        args.grad_out = grad_out.data_ptr()
        args.go_sb, args.go_sh, args.go_sl = _strides(grad_out)
        args.delta, args.inv_sum = delta.data_ptr(), inv_sum.data_ptr()
        args.grad_q = grad_q.data_ptr()
        args.gq_sb, args.gq_sh, args.gq_sl = _strides(grad_q)
        args.grad_v = grad_v.data_ptr()
        args.gv_sb, args.gv_sh, args.gv_sl = _strides(grad_v)
        last = layout.chunks_per_round - 1
        for rnd in range(layout.n_hashes):
            for first, step, stop in ((0, 2, last), (1, 2, last), (last, 1, last + 1)):
                _launch(args, True, rnd, first, step, stop)
        # grad_q holds d(qk) whole: the kernel passes each key's share through k̂'s
        # normalisation as it adds it.
        return grad_q, grad_v, None, None, None
