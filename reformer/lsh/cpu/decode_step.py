"""The fused LSH decoding step on the CPU: one C call per layer and token
(``lsh_cpu_decode_step`` in lsh_cpu.c), the twin of :class:`reformer.decode.LSHCache`'s
torch step (hash the new position, read its key set from the bucket table, attend, store
it), with the same key set.

The call's arguments are laid out once per cache (every buffer the cache owns is fixed for
the whole generation); a step sets the new position's input and index and calls, so its
Python work does not grow with the number of heads or rounds. Its work items are the
(batch row, head) pairs, claimed from one counter; with ``torch.get_num_threads()`` > 1
and at least ``PARALLEL_ITEMS`` of them the forward's worker threads share them (a batch
of one runs on the calling thread alone: its items are too small to hand out).
"""

from __future__ import annotations

import ctypes
from concurrent.futures import Future

import torch

from reformer.lsh.cpu.build import DECODE_MAX_FACTORS, DecodeArgs, load_kernel
from reformer.lsh.cpu.function import _NO_MORE_ITEMS, _submit, _threads, _wait_for_all

# The fewest (batch row, head) items a step shares among threads.
PARALLEL_ITEMS = 8


def fused_step_limits(factors: tuple[int, ...]) -> str | None:
    """Why the fused step cannot take a hash with these factors, or None when it can."""
    if len(factors) > DECODE_MAX_FACTORS:
        return f"{len(factors)} hash factors (the fused step takes up to {DECODE_MAX_FACTORS})"
    return None


def _pointer(tensor: torch.Tensor | None) -> int | None:
    return None if tensor is None else tensor.data_ptr()


class FusedDecodeStep:
    """The C step bound to one cache's buffers. ``weights`` (H, d_model, 2·d_head) and the
    cache's rotations, inputs, norms, table, counts, ``first`` and output buffer must be
    float32 / int32 / int64 CPU tensors as the cache makes them; they are held here, so the
    pointers stay valid."""

    def __init__(self, cache, weights: torch.Tensor) -> None:
        kernel = load_kernel()
        self._run, self._project = kernel.lsh_cpu_decode_step, kernel.lsh_cpu_decode_project
        batch, capacity, d_model = cache.inputs.shape
        # The step's per-(row, head) projections [qk | v | u], written before its items.
        width = 2 * cache.d_head + d_model
        qvu = torch.empty(batch, cache.n_heads, width, dtype=torch.float32)
        weights = weights.detach().to(torch.float32).contiguous()
        qk_weights_t = weights[..., : cache.d_head].transpose(1, 2).contiguous()
        self._held = [
            weights,
            qk_weights_t,
            cache.rotations.to(torch.float32).contiguous(),
            None if cache.first is None else cache.first.to(torch.int64).contiguous(),
            qvu,
        ]
        _, _, rotations, first, _ = self._held
        for name in ("inputs", "inv_norms", "table", "counts", "out"):
            if not getattr(cache, name).is_contiguous():
                raise ValueError(f"the cache's {name} must be contiguous")
        factors = cache.factors
        args = DecodeArgs(
            batch=batch,
            heads=cache.n_heads,
            d_head=cache.d_head,
            d_model=d_model,
            rounds=cache.n_hashes,
            bucket_size=cache.bucket_size,
            width=rotations.shape[-1],
            n_buckets=cache.table.shape[3],
            capacity=capacity,
            t=0,
            n_factors=len(factors),
            scale=cache.d_head**-0.5,
        )
        for i, factor in enumerate(factors):
            args.factors[i] = factor
        args.weights, args.rotations = weights.data_ptr(), rotations.data_ptr()
        args.qk_weights_t = qk_weights_t.data_ptr()
        args.first = _pointer(first)
        args.inputs, args.inv_norms = cache.inputs.data_ptr(), cache.inv_norms.data_ptr()
        args.table, args.counts = cache.table.data_ptr(), cache.counts.data_ptr()
        args.out, args.qvu = cache.out.data_ptr(), qvu.data_ptr()
        self._args = args
        self._ref = ctypes.byref(args)
        self._items = batch * cache.n_heads

    def __call__(
        self,
        x: torch.Tensor,
        t: int,
        *,
        buckets: torch.Tensor | None = None,
        keys_out: torch.Tensor | None = None,
        buckets_out: torch.Tensor | None = None,
    ) -> None:
        """Run the step for position ``t`` with normalised input x (B, d_model), float32
        and contiguous; the output goes to the cache's ``out``. ``buckets`` (B, H, R)
        int64: the position's buckets, given instead of hashed; ``keys_out`` (B, H,
        (R+1)·bucket_size) int64 and ``buckets_out`` (B, H, R) int64 receive the key set
        (-1 padded) and the buckets (for tests)."""
        args = self._args
        args.x, args.t = x.data_ptr(), t
        extras = (buckets, keys_out, buckets_out)
        if any(extra is not None for extra in extras):
            for extra in extras:
                if extra is not None and (extra.dtype != torch.int64 or not extra.is_contiguous()):
                    raise ValueError("buckets, keys_out and buckets_out must be contiguous int64")
            args.given, args.keys_out, args.buckets_out = (_pointer(e) for e in extras)
            try:
                self._launch()
            finally:
                args.given = args.keys_out = args.buckets_out = None
        else:
            self._launch()

    def _launch(self) -> None:
        self._project(self._ref)
        counter = ctypes.c_int64(0)
        call = (self._ref, ctypes.byref(counter))
        threads = min(_threads(), self._items) if self._items >= PARALLEL_ITEMS else 1
        if threads == 1:
            self._run(*call)
        else:
            futures: list[Future] = []
            try:
                _submit(threads - 1, self._run, call, futures)
                self._run(*call)
                for future in futures:
                    future.result()
            except BaseException:
                # The workers write into the cache through raw pointers: stop them claiming
                # items, and let the exception go on only once every one has returned.
                counter.value = _NO_MORE_ITEMS
                _wait_for_all(futures)
                raise
        # A thread that could not allocate its scratch claims nothing; the others then
        # take every item. Only when none could is an item left undone.
        if counter.value < self._items:
            raise MemoryError("the fused CPU decoding step could not allocate its scratch")
