"""Tile helpers of the Triton LSH kernels (``kernels.py``; Reformer sec. 2): row gathers
by the sort permutation, unit-length keys, one (query tile, key tile) pair's logits with
every mask and the duplicate counts, and that pair's probabilities and dL/dlogits for the
backward kernels. Every function here is inlined into the kernels that call it.

Shapes as in ``kernels.py``: a tile is BLOCK_Q (queries) or BLOCK_C (a chunk of keys)
rows of width BLOCK_D (qk) or BLOCK_DV (v); positions index the (Lp, width) rows of one
(batch, head).
"""

from __future__ import annotations

import triton
import triton.language as tl

from reformer.lsh.layout import MASK_LOGIT, SELF_LOGIT

SELF = tl.constexpr(SELF_LOGIT)
MASKED = tl.constexpr(MASK_LOGIT)
TINY = tl.constexpr(1.1754943508222875e-38)  # float32 tiny: a fully masked row's sum
NORM_EPS = tl.constexpr(1e-12)  # F.normalize's eps


@triton.jit
def load_rows(base, pos, ok, width, BLOCK: tl.constexpr):
    """(len(pos), BLOCK) rows ``pos`` of a (Lp, width) matrix, zero where not ``ok``."""
    cols = tl.arange(0, BLOCK)
    ptrs = base + (pos[:, None] * width + cols[None, :])
    return tl.load(ptrs, mask=ok[:, None] & (cols[None, :] < width), other=0.0)


@triton.jit
def finite_values(rows):
    """Value rows with NaN and inf read as 0, and where they were finite (bool, rows'
    shape). A masked pair's weight is exactly 0, but 0 · NaN is NaN: tl.dot (P·V forward,
    dO·Vᵀ backward) must only see finite values, and the forward marks the queries that
    may see a bad key instead (their rows become NaN, :func:`sees_bad`). A mask, a compare
    and a select per element: finite means the exponent bits are not all ones (integer
    ops on the raw bits, which the interpreter's bfloat16 also is)."""
    if rows.dtype == tl.float32:
        finite = (rows.to(tl.int32, bitcast=True) & 0x7F800000) != 0x7F800000
    elif rows.dtype == tl.float16:
        finite = (rows.to(tl.int16, bitcast=True) & 0x7C00) != 0x7C00
    else:  # bfloat16
        finite = (rows.to(tl.int16, bitcast=True) & 0x7F80) != 0x7F80
    return tl.where(finite, rows, tl.zeros_like(rows)), finite


@triton.jit
def sees_bad(logits, finite):
    """(rows,) int32: how many keys of the tile whose value held NaN or inf (``finite``
    from :func:`finite_values`, (keys, BLOCK_DV)) each query may see (a pair the masks
    leave at a finite logit)."""
    bad = tl.min(finite.to(tl.int32), axis=1) == 0
    return tl.sum(((logits > float("-inf")) & bad[None, :]).to(tl.int32), axis=1)


@triton.jit
def store_rows(base, pos, ok, width, value, BLOCK: tl.constexpr):
    cols = tl.arange(0, BLOCK)
    ptrs = base + (pos[:, None] * width + cols[None, :])
    tl.store(ptrs, value, mask=ok[:, None] & (cols[None, :] < width))


@triton.jit
def unit_rows(x):
    """Rows of x (rows, BLOCK_D) scaled to unit length as F.normalize does (norm clamped
    below by 1e-12). Float32 ``/`` and ``tl.sqrt`` compile to approximations (div.full,
    sqrt.approx) on NVIDIA GPUs, while the interpreter rounds correctly: the correctly
    rounded forms keep the device within the interpreter's rounding. One reciprocal per
    row, so the tile pays a multiply, not a division."""
    xf = x.to(tl.float32)
    norm = tl.sqrt_rn(tl.sum(xf * xf, axis=1))
    inverse = tl.div_rn(tl.full(norm.shape, 1.0, tl.float32), tl.maximum(norm, NORM_EPS))
    return (xf * inverse[:, None]).to(x.dtype)


@triton.jit
def chunk_slots(sort_base, chunk_idx, bucket_size, first, BLOCK: tl.constexpr):
    """Positions held by slots first .. first + BLOCK - 1 of global chunk ``chunk_idx``,
    and which of those lanes lie inside the chunk: (BLOCK,) int32, (BLOCK,) bool."""
    lanes = first + tl.arange(0, BLOCK)
    ok = lanes < bucket_size
    return tl.load(sort_base + chunk_idx * bucket_size + lanes, mask=ok, other=0), ok


@triton.jit
def program_tile(
    QK,
    V,
    SORT,
    CHUNK_OF,
    VALID,
    rnd,
    n_heads,
    length,
    n_rounds,
    chunks_per_round,
    dim,
    dim_v,
    TILES: tl.constexpr,
    BLOCK_Q: tl.constexpr,
):
    """A program's (batch·head, global chunk g = rnd·N + chunk of the round), the first
    query lane of its tile (TILES query tiles of BLOCK_Q per chunk) and the base pointers
    of its (batch, head) in every input.

    The grid is one axis of N·B·H·TILES programs (``launch_grid``): CUDA caps grid axes 1
    and 2 at 65,535, which B·H passes at long batches, axis 0 at 2^31 - 1. Neighbouring
    programs share a (batch, head), so their gathers hit the same rows in L2."""
    pid = tl.program_id(0)
    per_head = chunks_per_round * TILES
    bh = (pid // per_head).to(tl.int64)
    rest = pid % per_head
    g = rnd * chunks_per_round + rest // TILES
    first = (rest % TILES) * BLOCK_Q
    return (
        bh,
        g,
        first,
        SORT + bh * n_rounds * length,
        CHUNK_OF + bh * n_rounds * length,
        VALID + (bh // n_heads) * length,
        QK + bh * length * dim,
        V + bh * length * dim_v,
    )


@triton.jit
def query_tile(
    sort_base,
    qk_base,
    chunk_idx,
    bucket_size,
    first,
    dim,
    scale,
    BLOCK_Q: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    """Positions, lanes inside the chunk, raw rows and scaled rows (q / sqrt(D), input
    dtype) of a query tile."""
    q_pos, q_ok = chunk_slots(sort_base, chunk_idx, bucket_size, first, BLOCK_Q)
    q_raw = load_rows(qk_base, q_pos, q_ok, dim, BLOCK_D)
    return q_pos, q_ok, q_raw, (q_raw.to(tl.float32) * scale).to(q_raw.dtype)


@triton.jit
def key_chunk(
    sort_base, qk_base, chunk_idx, bucket_size, dim, BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr
):
    """Positions, lanes inside the chunk and unit rows k̂ of a whole chunk of keys."""
    k_pos, k_ok = chunk_slots(sort_base, chunk_idx, bucket_size, 0, BLOCK_C)
    return k_pos, k_ok, unit_rows(load_rows(qk_base, k_pos, k_ok, dim, BLOCK_D))


@triton.jit
def window_keys(
    sort_base,
    qk_base,
    q_pos,
    q_ok,
    q_raw,
    g,
    step: tl.constexpr,
    total,
    bucket_size,
    dim,
    BLOCK_C: tl.constexpr,
    BLOCK_Q: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    """Positions, lanes and unit rows k̂ of key chunk ``step`` of query chunk g's window:
    step 0 is g itself, step 1 its look-back chunk g-1 (mod total). When the query tile is
    the whole chunk, its own rows are step 0's keys (no second gather)."""
    if step == 0 and BLOCK_Q == BLOCK_C:
        k_pos, k_ok, k_hat = q_pos, q_ok, unit_rows(q_raw)
    else:
        k_pos, k_ok, k_hat = key_chunk(
            sort_base, qk_base, (g + total - step) % total, bucket_size, dim, BLOCK_C, BLOCK_D
        )
    return k_pos, k_ok, k_hat


@triton.jit
def row_statistics(ROW_MAX, LOG_SUM, DELTA, offsets, ok):
    """Saved row maximum and log row sum, and delta = rowsum(dO · O), of the queries."""
    return (
        tl.load(ROW_MAX + offsets, mask=ok, other=0.0),
        tl.load(LOG_SUM + offsets, mask=ok, other=0.0),
        tl.load(DELTA + offsets, mask=ok, other=0.0),
    )


@triton.jit
def tile_logits(
    q,
    k_hat,
    q_pos,
    k_pos,
    q_ok,
    k_ok,
    chunk_base,
    valid_base,
    length,
    n_rounds,
    total,
    CAUSAL: tl.constexpr,
    HAS_VALID: tl.constexpr,
    COUNTS: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """Logits of a (query tile, key tile) pair in float32, and each key's occurrence count.

    The self pair gets the self logit; masked pairs (causal, padding, lanes past the
    chunk) get -inf, i.e. weight exactly 0 (the torch path's MASK_LOGIT then zero fill:
    callers keep a row maximum of at least MASK_LOGIT, as the torch path's is).
    ``count`` is how often the key occurs among all windows the query sees, over every
    round (1 without the duplicate correction): a key's slot in round r is in the
    query's round-r window when it lies in the query's chunk C or C-1; when C is a
    round's first chunk, C-1 holds round r-1's slots.
    """
    logits = tl.dot(q, tl.trans(k_hat), input_precision=PRECISION)
    logits = tl.where(q_pos[:, None] == k_pos[None, :], SELF, logits)
    masked = (~q_ok)[:, None] | (~k_ok)[None, :]
    if CAUSAL:
        masked = masked | (k_pos[None, :] > q_pos[:, None])
    if HAS_VALID:
        key_valid = tl.load(valid_base + k_pos, mask=k_ok, other=0)
        masked = masked | (key_valid == 0)[None, :]
    logits = tl.where(masked, float("-inf"), logits)
    if COUNTS:
        count = tl.zeros(logits.shape, dtype=tl.int32)
        for rnd in range(n_rounds):
            row = chunk_base + rnd * length
            before = chunk_base + ((rnd + n_rounds - 1) % n_rounds) * length
            q_chunk = tl.load(row + q_pos, mask=q_ok, other=0)
            k_chunk = tl.load(row + k_pos, mask=k_ok, other=-1)
            k_chunk_before = tl.load(before + k_pos, mask=k_ok, other=-1)
            q_back = (q_chunk + total - 1) % total
            count += (k_chunk[None, :] == q_chunk[:, None]).to(tl.int32)
            count += (k_chunk[None, :] == q_back[:, None]).to(tl.int32)
            count += (k_chunk_before[None, :] == q_back[:, None]).to(tl.int32)
        count = tl.maximum(count, 1).to(tl.float32)
    else:
        count = 1.0
    return logits, count


@triton.jit
def other_keys(logits, q_pos, k_pos):
    """(rows,) int32: how many live keys of the tile (weight above 0) are not the query
    itself."""
    live = (logits > MASKED) & (q_pos[:, None] != k_pos[None, :])
    return tl.sum(live.to(tl.int32), axis=1)


@triton.jit
def tile_grad_logits(
    q,
    k_hat,
    v_k,
    d_out,
    q_pos,
    k_pos,
    q_ok,
    k_ok,
    row_max,
    log_sum,
    delta,
    chunk_base,
    valid_base,
    length,
    n_rounds,
    total,
    CAUSAL: tl.constexpr,
    HAS_VALID: tl.constexpr,
    COUNTS: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """Final probabilities P and dL/dlogits of a (query tile, key tile) pair, float32.

    P = exp(l - max - log_sum) / count from the saved statistics; dS = P · (dP - delta)
    with dP = dO v^T and delta = rowsum(dO · O); the self logit is a constant, so its dS is 0.
    """
    logits, count = tile_logits(
        q,
        k_hat,
        q_pos,
        k_pos,
        q_ok,
        k_ok,
        chunk_base,
        valid_base,
        length,
        n_rounds,
        total,
        CAUSAL,
        HAS_VALID,
        COUNTS,
        PRECISION,
    )
    probs = tl.exp((logits - row_max[:, None]) - log_sum[:, None]) / count
    grad_probs = tl.dot(d_out, tl.trans(v_k), input_precision=PRECISION)
    grad = tl.where(q_pos[:, None] == k_pos[None, :], 0.0, probs * (grad_probs - delta[:, None]))
    return probs, grad
