"""Triton kernels of LSH chunk attention (Reformer sec. 2), forward and backward.

The same semantics as ``reformer.lsh.torch_path.LSHAttentionFunction``: all rounds' sorted slots
are laid end to end, one sequence of R·Lp slots cut into chunks of ``bucket_size``; the queries
of chunk g see the keys of chunks g-1 (mod the number of chunks) and g. Hashing and the
stable sort stay in PyTorch; a program reads its positions from the sort permutation and
gathers the rows of qk and v itself, so no sorted copy of qk or v ever exists.

One launch handles one round. Within a round every position occupies exactly one slot, so
the program that owns a query chunk (forward, dq) or a key chunk (dk, dv) is the only
writer of those positions' rows in that launch: outputs are read, updated and written
without atomics, and results are bit-reproducible run to run. Launches of successive
rounds are ordered on the stream.

Forward: a program takes BLOCK_Q queries of its chunk (the whole chunk, or 16 or 32 rows
of it where larger tiles would spill registers; ``kernel_config``) against the (c, 2c)
window as two key tiles (own chunk, then look-back chunk, with an online-softmax rescale
between them), giving the round's row maximum m_r, sum S_r = sum exp(l - m_r) / count and
normalised output o_r, and merges them into the running (out, max, sum) of its positions:
out += (o_r - out) · S_r e^(m_r - m) / S. A row whose only live key is itself takes its own
v by selection, and the merge leaves it unchanged: its output is exactly its own v.

Backward recomputes the probabilities from the saved (max, log-sum) per position
(FlashAttention, Dao et al. 2022, sec. 3.1): one kernel owns query tiles (dq), one owns
key chunks (dk̂, dv; a key chunk g is seen by query chunks g and g+1, a query tile at a
time).

Shapes: qk (B, H, Lp, D), v (B, H, Lp, Dv), sort (B, H, R, Lp) int32, chunk_of
(B, H, R, Lp) int32 (global chunk of each (round, position), for the duplicate counts),
valid (B, Lp) int8; statistics (B, H, Lp) float32; accumulators float32.
"""

from __future__ import annotations

import triton
import triton.language as tl

from reformer.lsh.triton.tiles import (
    MASKED,
    TINY,
    chunk_slots,
    finite_values,
    load_rows,
    other_keys,
    program_tile,
    query_tile,
    row_statistics,
    sees_bad,
    store_rows,
    tile_grad_logits,
    tile_logits,
    unit_rows,
    window_keys,
)

# Launch integers that vary between the launches of one call (the round) or that Triton
# would turn into constants when they equal 1 (heads, rounds, chunks): specialising on
# them buys nothing here and would compile a binary per round index and per shape (the
# ahead-of-time check would then cover neighbours of the kernels that run). Lengths and
# widths stay specialised: their divisibility by 16 lets row gathers vectorise.
_DO_NOT_SPECIALIZE = ("rnd", "n_heads", "n_rounds", "chunks_per_round", "total")


@triton.jit(do_not_specialize=_DO_NOT_SPECIALIZE)
def lsh_forward_round(
    QK,
    V,
    SORT,
    CHUNK_OF,
    VALID,
    OUT,
    RUN_MAX,
    RUN_SUM,
    rnd,
    n_heads,
    length,
    n_rounds,
    chunks_per_round,
    total,
    bucket_size,
    dim,
    dim_v,
    scale,
    BLOCK_C: tl.constexpr,
    BLOCK_Q: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_DV: tl.constexpr,
    CAUSAL: tl.constexpr,
    HAS_VALID: tl.constexpr,
    COUNTS: tl.constexpr,
    LOOK_BACK: tl.constexpr,
    FIRST: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """One round: grid (chunks_per_round·B·H·BLOCK_C/BLOCK_Q,). Merges into OUT (B, H, Lp,
    Dv) float32 and RUN_MAX, RUN_SUM (B, H, Lp) float32 at the query tile's positions.

    The window's two halves (own chunk, then look-back chunk) are taken one after the
    other with an online-softmax rescale, so only one (BLOCK_Q, c) tile of logits is live."""
    bh, g, first, sort_base, chunk_base, valid_base, qk_base, v_base = program_tile(
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
        BLOCK_C // BLOCK_Q,
        BLOCK_Q,
    )

    q_pos, q_ok, q_raw, q = query_tile(
        sort_base, qk_base, g, bucket_size, first, dim, scale, BLOCK_Q, BLOCK_D
    )
    # Online softmax over the window's key chunks (own, then look-back): from a running
    # maximum of MASK_LOGIT and empty sums, the first chunk's update is exactly its own
    # statistics (0 · rescale + x = x).
    row_max = tl.full((BLOCK_Q,), MASKED, tl.float32)
    row_sum = tl.zeros((BLOCK_Q,), dtype=tl.float32)
    acc = tl.zeros((BLOCK_Q, BLOCK_DV), dtype=tl.float32)
    others = tl.zeros((BLOCK_Q,), dtype=tl.int32)
    bad_keys = tl.zeros((BLOCK_Q,), dtype=tl.int32)  # keys seen whose v holds NaN or inf
    n_key_chunks: tl.constexpr = 2 if LOOK_BACK else 1
    for step in tl.static_range(n_key_chunks):
        k_pos, k_ok, k_hat = window_keys(
            sort_base,
            qk_base,
            q_pos,
            q_ok,
            q_raw,
            g,
            step,
            total,
            bucket_size,
            dim,
            BLOCK_C,
            BLOCK_Q,
            BLOCK_D,
        )
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
        others += other_keys(logits, q_pos, k_pos)
        new_max = tl.maximum(row_max, tl.max(logits, axis=1))
        rescale = tl.exp(row_max - new_max)
        weights = tl.exp(logits - new_max[:, None]) / count
        row_sum = row_sum * rescale + tl.sum(weights, axis=1)
        v_k, finite = finite_values(load_rows(v_base, k_pos, k_ok, dim_v, BLOCK_DV))
        bad_keys += sees_bad(logits, finite)
        acc = acc * rescale[:, None] + tl.dot(weights.to(v_k.dtype), v_k, input_precision=PRECISION)
        row_max = new_max
    # A query that sees only masked keys (a padded one) gets output 0, not NaN.
    row_sum = tl.maximum(row_sum, TINY)
    round_out = acc * tl.div_rn(tl.full(row_sum.shape, 1.0, tl.float32), row_sum)[:, None]
    # A query whose only live key is itself takes its own v, selected rather than
    # multiplied: tl.dot of float32 under tf32x3 keeps about 22 of 24 mantissa bits, so
    # 1 · v through the tensor cores is not v. The load is masked to those rows only.
    only_self = q_ok & (others == 0) & (row_max > MASKED)
    own_v = load_rows(v_base, q_pos, only_self, dim_v, BLOCK_DV).to(tl.float32)
    round_out = tl.where(only_self[:, None], own_v, round_out)
    # A query that may see a value holding NaN or inf gets NaN in its whole row (the
    # values tl.dot multiplied were read as zeros, see finite_values).
    round_out = tl.where((bad_keys > 0)[:, None], float("nan"), round_out)

    out_base = OUT + bh * length * dim_v
    stat_ptrs = bh * length + q_pos
    if FIRST:
        store_rows(out_base, q_pos, q_ok, dim_v, round_out, BLOCK_DV)
        tl.store(RUN_MAX + stat_ptrs, row_max, mask=q_ok)
        tl.store(RUN_SUM + stat_ptrs, row_sum, mask=q_ok)
    else:
        run_max = tl.load(RUN_MAX + stat_ptrs, mask=q_ok, other=0.0)
        run_sum = tl.load(RUN_SUM + stat_ptrs, mask=q_ok, other=1.0)
        out = load_rows(out_base, q_pos, q_ok, dim_v, BLOCK_DV)
        new_max = tl.maximum(run_max, row_max)
        new_part = row_sum * tl.exp(row_max - new_max)
        new_sum = run_sum * tl.exp(run_max - new_max) + new_part
        out += (round_out - out) * (new_part / new_sum)[:, None]
        store_rows(out_base, q_pos, q_ok, dim_v, out, BLOCK_DV)
        tl.store(RUN_MAX + stat_ptrs, new_max, mask=q_ok)
        tl.store(RUN_SUM + stat_ptrs, new_sum, mask=q_ok)


@triton.jit(do_not_specialize=_DO_NOT_SPECIALIZE)
def lsh_backward_query_round(
    QK,
    V,
    DO,
    SORT,
    CHUNK_OF,
    VALID,
    ROW_MAX,
    LOG_SUM,
    DELTA,
    DQ,
    rnd,
    n_heads,
    length,
    n_rounds,
    chunks_per_round,
    total,
    bucket_size,
    dim,
    dim_v,
    scale,
    BLOCK_C: tl.constexpr,
    BLOCK_Q: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_DV: tl.constexpr,
    CAUSAL: tl.constexpr,
    HAS_VALID: tl.constexpr,
    COUNTS: tl.constexpr,
    LOOK_BACK: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """dq of one round's query tiles: grid (chunks_per_round·B·H·BLOCK_C/BLOCK_Q,); DQ
    (B, H, Lp, D) float32 += dS k̂ / sqrt(D) at the tile's positions."""
    bh, g, first, sort_base, chunk_base, valid_base, qk_base, v_base = program_tile(
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
        BLOCK_C // BLOCK_Q,
        BLOCK_Q,
    )

    q_pos, q_ok, q_raw, q = query_tile(
        sort_base, qk_base, g, bucket_size, first, dim, scale, BLOCK_Q, BLOCK_D
    )
    d_out = load_rows(DO + bh * length * dim_v, q_pos, q_ok, dim_v, BLOCK_DV)
    row_max, log_sum, delta = row_statistics(ROW_MAX, LOG_SUM, DELTA, bh * length + q_pos, q_ok)

    grad_q = tl.zeros((BLOCK_Q, BLOCK_D), dtype=tl.float32)
    n_key_chunks: tl.constexpr = 2 if LOOK_BACK else 1
    for step in tl.static_range(n_key_chunks):  # own chunk, then the look-back chunk
        k_pos, k_ok, k_hat = window_keys(
            sort_base,
            qk_base,
            q_pos,
            q_ok,
            q_raw,
            g,
            step,
            total,
            bucket_size,
            dim,
            BLOCK_C,
            BLOCK_Q,
            BLOCK_D,
        )
        _, grad = tile_grad_logits(
            q,
            k_hat,
            finite_values(load_rows(v_base, k_pos, k_ok, dim_v, BLOCK_DV))[0],
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
            CAUSAL,
            HAS_VALID,
            COUNTS,
            PRECISION,
        )
        grad_q += tl.dot(grad.to(k_hat.dtype), k_hat, input_precision=PRECISION)
    dq_base = DQ + bh * length * dim
    grad_q = load_rows(dq_base, q_pos, q_ok, dim, BLOCK_D) + grad_q * scale
    store_rows(dq_base, q_pos, q_ok, dim, grad_q, BLOCK_D)


@triton.jit(do_not_specialize=_DO_NOT_SPECIALIZE)
def lsh_backward_key_round(
    QK,
    V,
    DO,
    SORT,
    CHUNK_OF,
    VALID,
    ROW_MAX,
    LOG_SUM,
    DELTA,
    DK,
    DV,
    rnd,
    n_heads,
    length,
    n_rounds,
    chunks_per_round,
    total,
    bucket_size,
    dim,
    dim_v,
    scale,
    BLOCK_C: tl.constexpr,
    BLOCK_Q: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_DV: tl.constexpr,
    CAUSAL: tl.constexpr,
    HAS_VALID: tl.constexpr,
    COUNTS: tl.constexpr,
    LOOK_BACK: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """dk̂ and dv of one round's key tiles (BLOCK_Q keys of a chunk): grid
    (chunks_per_round·B·H·BLOCK_C/BLOCK_Q,). Key chunk g is seen by the queries of chunk g
    and, as their look-back, of chunk g+1 (mod total), taken BLOCK_Q queries at a time.
    DK (B, H, Lp, D) float32 += dS^T q / sqrt(D); DV (B, H, Lp, Dv) float32 += P^T dO."""
    bh, g, first, sort_base, chunk_base, valid_base, qk_base, v_base = program_tile(
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
        BLOCK_C // BLOCK_Q,
        BLOCK_Q,
    )
    do_base = DO + bh * length * dim_v

    k_pos, k_ok = chunk_slots(sort_base, g, bucket_size, first, BLOCK_Q)
    k_hat = unit_rows(load_rows(qk_base, k_pos, k_ok, dim, BLOCK_D))
    v_k = finite_values(load_rows(v_base, k_pos, k_ok, dim_v, BLOCK_DV))[0]
    grad_k = tl.zeros((BLOCK_Q, BLOCK_D), dtype=tl.float32)
    grad_v = tl.zeros((BLOCK_Q, BLOCK_DV), dtype=tl.float32)
    n_query_chunks: tl.constexpr = 2 if LOOK_BACK else 1
    for step in tl.static_range(n_query_chunks):
        # A rolled loop: unrolled, the compiler hoists the next tiles' gathers and the
        # float32 kernel spills; not pipelined either (one stage), for the same reason.
        for tile in tl.range(0, BLOCK_C // BLOCK_Q, num_stages=1):
            q_pos, q_ok, _, q = query_tile(
                sort_base,
                qk_base,
                (g + step) % total,
                bucket_size,
                tile * BLOCK_Q,
                dim,
                scale,
                BLOCK_Q,
                BLOCK_D,
            )
            d_out = load_rows(do_base, q_pos, q_ok, dim_v, BLOCK_DV)
            row_max, log_sum, delta = row_statistics(
                ROW_MAX, LOG_SUM, DELTA, bh * length + q_pos, q_ok
            )
            probs, grad = tile_grad_logits(
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
                CAUSAL,
                HAS_VALID,
                COUNTS,
                PRECISION,
            )
            grad_v += tl.dot(tl.trans(probs.to(d_out.dtype)), d_out, input_precision=PRECISION)
            grad_k += tl.dot(tl.trans(grad.to(q.dtype)), q, input_precision=PRECISION)
    dk_base, dv_base = DK + bh * length * dim, DV + bh * length * dim_v
    store_rows(
        dk_base, k_pos, k_ok, dim, load_rows(dk_base, k_pos, k_ok, dim, BLOCK_D) + grad_k, BLOCK_D
    )
    store_rows(
        dv_base,
        k_pos,
        k_ok,
        dim_v,
        load_rows(dv_base, k_pos, k_ok, dim_v, BLOCK_DV) + grad_v,
        BLOCK_DV,
    )
