"""The torch path's autograd Function: forward and backward over slices, rounds merged by
log-sum-exp (Reformer sec. 2; backward recomputes the weights, as FlashAttention does)."""

from __future__ import annotations

import torch

from reformer.lsh.layout import Layout, normalize_backward_, row_dot, sequence_major
from reformer.lsh.torch_path.rows import Rows, Workspace, rows_addressable
from reformer.lsh.torch_path.slices import (
    EXP2_FLOOR,
    SELF_LOGIT2,
    build_slice,
    finite_values,
    round_chunks,
    sees_bad,
)


def _weights(logits: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """2^(logits - shift) in place (base-2 logits), exactly 0 at or below the floor (masked
    pairs)."""
    shifted = torch.threshold_(logits.sub_(shift), EXP2_FLOOR, float("-inf"))
    return shifted.exp2_()


def _add_windows(rows: Rows, target, key_pos, weights, inputs, layout: Layout) -> None:
    """target[key] += weights^T @ inputs for every key slot of the windows.

    weights (b, h, n, c, w), inputs (b, h, n, c, D). The look-back and own halves of each
    window are separate matmuls, so each result is contiguous and lands on its key slots
    (key_pos[:n·c] and key_pos[c:]) without building the overlapping windows.
    """
    c = layout.bucket_size
    own = torch.matmul(weights[..., -c:].transpose(-1, -2), inputs).flatten(2, 3)
    rows.add(target, key_pos[..., -own.shape[2] :], own)
    if layout.look_back:
        back = torch.matmul(weights[..., :c].transpose(-1, -2), inputs).flatten(2, 3)
        rows.add(target, key_pos[..., : back.shape[2]], back)


class LSHAttentionFunction(torch.autograd.Function):
    """out (B, H, Lp, Dv) = LSH attention of padded qk (B, H, Lp, D), v (B, H, Lp, Dv).

    ``sort_idx`` (B, H, R, Lp) int64 orders each round by (bucket, position);
    ``key_valid`` (B, Lp) bool or None marks keys that may be attended to.
    Saves qk, v, sort_idx, key_valid, the output, and each query's log-sum-exp over all its
    rounds as two (B, H, Lp) halves, the row maximum and the log of the row sum: all the
    backward pass needs. One folded lse would sit at the -1e5 self-logit scale for a query
    that sees only itself, where float32 is spaced 0.0078, and its recomputed weight
    exp(-1e5 - lse) would be off by that much; kept apart, it is exactly 1.
    """

    @staticmethod
    def forward(ctx, qk, v, sort_idx, key_valid, layout: Layout):
        qk, v = _addressable(qk), _addressable(v)
        values, bad = finite_values(v)
        acc = torch.float64 if qk.dtype == torch.float64 else torch.float32
        chunk_of = round_chunks(sort_idx, layout, acc) if layout.needs_counts else None
        length, d_value = qk.shape[2], v.shape[-1]
        out = sequence_major(v.shape, v.dtype, v.device)
        lse_max = torch.empty(qk.shape[:3], dtype=acc, device=v.device)
        lse_log_sum = torch.empty_like(lse_max)
        ws = Workspace(qk.device)
        for group in layout.groups():
            b0, b1, h0, h1 = group
            rows = Rows(layout, group, qk.device)
            merged = None
            for rnd in range(layout.n_hashes):
                round_out = qk.new_empty(b1 - b0, h1 - h0, length, d_value, dtype=acc)
                round_max = qk.new_empty(b1 - b0, h1 - h0, length, 1, dtype=acc)
                round_sum = qk.new_empty(b1 - b0, h1 - h0, length, 1, dtype=acc)
                for n0, n1 in layout.chunk_blocks((b1 - b0) * (h1 - h0)):
                    piece = build_slice(
                        qk,
                        values,
                        sort_idx,
                        key_valid,
                        chunk_of,
                        layout,
                        rows,
                        group,
                        rnd,
                        (n0, n1),
                        ws,
                    )
                    poisoned = None if bad is None else sees_bad(piece, bad, layout, rows)
                    # A row with every key masked (a padded query, or one whose keys were
                    # all seen in an earlier round) gets weight 0 everywhere: its maximum
                    # is at least the self logit, far above any masked logit.
                    row_max = piece.logits.amax(dim=-1, keepdim=True).clamp_min_(SELF_LOGIT2)
                    weights = _weights(piece.logits, row_max)
                    total = weights.sum(dim=-1, keepdim=True).clamp_min_(torch.finfo(acc).tiny)
                    # Normalised after the matmul: c·Dv divisions instead of c·2c.
                    part = torch.matmul(weights.to(v.dtype), piece.values).to(acc).div_(total)
                    if poisoned is not None:
                        part.masked_fill_(poisoned.unsqueeze(-1), float("nan"))
                    rows.put(round_out, piece.query_pos, part.flatten(2, 3))
                    rows.put(round_max, piece.query_pos, row_max.flatten(2, 3))
                    rows.put(round_sum, piece.query_pos, total.flatten(2, 3))
                merged = _merge_round(merged, round_out, round_max, round_sum)
            assert merged is not None  # layout.n_hashes >= 1
            group_out, group_max, group_sum = merged
            out[b0:b1, h0:h1] = group_out
            lse_max[b0:b1, h0:h1] = group_max.squeeze(-1)
            lse_log_sum[b0:b1, h0:h1] = group_sum.log().squeeze(-1)
        ctx.layout, ctx.all_finite = layout, bad is None
        ctx.save_for_backward(qk, v, sort_idx, key_valid, lse_max, lse_log_sum, out)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        qk, v, sort_idx, key_valid, lse_max, lse_log_sum, out = ctx.saved_tensors
        layout: Layout = ctx.layout
        # dP = dO·Vᵀ reads finite values only (finite_values); a query that saw a bad value
        # has a NaN output, so its delta, and its gradients, are NaN where dO is not 0.
        values = v if ctx.all_finite else finite_values(v)[0]
        acc = lse_max.dtype
        chunk_of = round_chunks(sort_idx, layout, acc) if layout.needs_counts else None
        grad_out = _addressable(grad_out)
        # Gradients are written straight into their (B, Lp, H, D) memory, which is what the
        # projections' backward reads, and accumulated there when acc is their dtype; a
        # group's float32 accumulators are needed only for half-precision inputs.
        grad_qk = sequence_major(qk.shape, qk.dtype, qk.device, zero=True)
        grad_v = sequence_major(v.shape, v.dtype, v.device, zero=True)
        direct = qk.dtype == acc
        # 1 / each query's row sum, once per position (B, H, Lp). A row that saw a key has
        # sum >= 1 (its maximum weighs 2^0); one that saw none (all padding) has the clamped
        # tiny sum and all-zero weights, and its 1/sum (~1e38) would overflow dO's products
        # to inf (inf · 0 = NaN): it gets 0.
        inv_total = torch.where(lse_log_sum < 0, 0.0, lse_log_sum.neg().exp())
        ws = Workspace(qk.device)
        for group in layout.groups():
            b0, b1, h0, h1 = group
            rows = Rows(layout, group, qk.device)
            qk_group = qk[b0:b1, h0:h1]
            # rowsum(dO · O) (b, h, Lp): one group at a time bounds the product's size.
            delta = row_dot(grad_out[b0:b1, h0:h1], out[b0:b1, h0:h1], acc)
            grad_q = grad_qk[b0:b1, h0:h1] if direct else torch.zeros_like(qk_group, dtype=acc)
            grad_values = (
                grad_v[b0:b1, h0:h1] if direct else torch.zeros_like(v[b0:b1, h0:h1], dtype=acc)
            )
            grad_keys = torch.zeros_like(qk_group, dtype=acc, memory_format=torch.contiguous_format)
            for rnd in range(layout.n_hashes):
                for n0, n1 in layout.chunk_blocks((b1 - b0) * (h1 - h0)):
                    piece = build_slice(
                        qk,
                        values,
                        sort_idx,
                        key_valid,
                        chunk_of,
                        layout,
                        rows,
                        group,
                        rnd,
                        (n0, n1),
                        ws,
                    )
                    grid = piece.logits.shape[2:4]
                    q_max = rows.take(lse_max, piece.query_pos).unflatten(-1, grid)
                    # Each query's 1 / sum scales its row of dO and its delta rather than
                    # its (c, w) weights: the same products, c·Dv multiplications instead of
                    # c·w, and no folded max + log sum, which at the -1e5 self-logit scale
                    # (float32 spacing 0.0078) would lose a self-only query's exact weight.
                    inv_sum = rows.take(inv_total, piece.query_pos)
                    inv_sum = inv_sum.unflatten(-1, grid).unsqueeze(-1)  # (b, h, n, c, 1)
                    weights = _weights(piece.logits, q_max.unsqueeze(-1))
                    d_out = rows.take(grad_out, piece.query_pos).unflatten(2, grid)
                    d_out = (d_out.to(acc) * inv_sum).to(v.dtype)
                    q_delta = rows.take_local(delta, piece.query_pos, grid).unsqueeze(-1)
                    q_delta = q_delta.mul_(inv_sum)
                    _add_windows(
                        rows, grad_values, piece.key_pos, weights.to(v.dtype), d_out, layout
                    )
                    grad_probs = ws.get("grad", piece.logits.shape, v.dtype)
                    torch.matmul(d_out, piece.values.transpose(-1, -2), out=grad_probs)
                    grad_probs = grad_probs.to(acc)
                    del d_out
                    grad_logits = grad_probs.sub_(q_delta).mul_(weights)
                    del weights
                    # Masked pairs need no fill: their probs are exactly 0.
                    piece.zero_self(grad_logits)
                    grad_logits = grad_logits.to(qk.dtype)
                    grad_query = torch.matmul(grad_logits, piece.keys).flatten(2, 3)
                    rows.add(grad_q, piece.query_pos, grad_query.mul_(layout.scale))
                    del grad_query
                    _add_windows(rows, grad_keys, piece.key_pos, grad_logits, piece.queries, layout)
                    del piece, grad_logits
            del delta
            grad_q.add_(normalize_backward_(qk_group, grad_keys))
            del grad_keys
            if not direct:
                grad_qk[b0:b1, h0:h1] = grad_q
                grad_v[b0:b1, h0:h1] = grad_values
            del grad_q, grad_values
        return grad_qk, grad_v, None, None, None


def _addressable(x: torch.Tensor) -> torch.Tensor:
    """x itself when :class:`Rows` can address it in place, else a contiguous copy."""
    return x if rows_addressable(x) else x.contiguous()


def _merge_round(merged, round_out, round_max, round_sum):
    """Merge one round's normalised output into the running (out, max, sum) (Reformer sec. 2:
    out = sum_r o_r · exp(lse_r - logsumexp_r lse_r), with lse_r = max_r + log sum_r).

    round_out (b, h, Lp, Dv) is the round's softmax output; round_max and round_sum
    (b, h, Lp, 1) are its row maximum (a base-2 logit) and sum of 2^(logit - max) over the
    kept occurrences. The maximum and the sum are kept apart rather than folded into one
    lse: a row that sees only itself has max = SELF_LOGIT2 in every round (without the
    duplicate correction), where float32 is spaced 0.0156, so an lse formed there would
    carry that rounding into the round weights. Kept apart, 2^(max_r - max) is exactly 1
    for such rows, and the running-mean update
    out += (o_r - out) · w_r leaves out exactly v when every round gives v.
    Returns the new (out, max, sum); out is updated in place.
    """
    if merged is None:
        return round_out, round_max, round_sum
    out, run_max, run_sum = merged
    new_max = torch.maximum(run_max, round_max)
    old_part = run_sum * torch.exp2(run_max - new_max)
    new_part = round_sum * torch.exp2(round_max - new_max)
    new_sum = old_part + new_part
    out.add_(round_out.sub_(out).mul_(new_part / new_sum))
    return out, new_max, new_sum
