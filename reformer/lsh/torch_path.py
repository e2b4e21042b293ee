"""Memory-frugal LSH attention kernel: a custom autograd Function (Reformer sec. 2).

Given hash buckets, positions are sorted by (bucket, position) per round, all rounds laid
end to end as one sequence of n_hashes·L slots, cut into chunks of ``bucket_size``; each
chunk attends to itself and to the previous chunk, wrapping around the whole flattened
sequence. Rounds are combined by log-sum-exp, which makes the result one softmax over
every (round, key) occurrence a query saw; the duplicate correction divides each
occurrence's weight by its count, so a key seen in several windows weighs once.

Unlike the peers, which keep every round's (L, 2c) chunk scores for backward, this
Function saves only qk, v, the sort permutation, the output and one log-sum-exp per
position, and recomputes chunk scores block by block in backward, as FlashAttention does.
Work is done in slices of (head group, round, block of chunks) whose number of logits is
bounded by ``Layout.slice_elements`` (an argument of ``lsh_attention``), so transient memory
does not grow with L, while short sequences still run as a few large batched ops.

The CPU cost of this path is the number of passes over a slice's (c, 2c) logits, so every
mask is one float bias added by the logits' own matmul (``baddbmm``): causal and padding
masks, and the duplicate correction, done by keeping exactly one occurrence of each key
a query sees (the one in the earliest round; see :func:`_mask_seen_before`) instead of dividing
every occurrence's weight by its count. Both give the same softmax over the union of keys.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from reformer.lsh.layout import (
    SELF_LOGIT,
    Layout,
    normalize_backward_,
    round_chunk,
    row_dot,
    sequence_major,
)

# Inside this path a masked pair (causal, padding, a duplicate occurrence) gets a bias of
# at most -0.75 × MASK_SCALE, so it never sets a row's maximum and after the shift lies far
# below the floor: its weight is exactly 0 (layout.MASK_LOGIT is the reference's mask).
MASK_SCALE = 1e9
# exp() of anything below about -87 gives a float32 denormal or underflows, and x86 takes
# a microcode slow path for those (25-100x slower here). Shifted logits at or below this
# floor are set to -inf first, so their weights are exactly 0 and exp() stays fast; a
# weight below exp(-87) ~ 1.6e-38 of the row's largest is no measurable change.
EXP_FLOOR = -87.0
# Inside the kernel logits are kept in base 2 (natural logits × log2(e), folded into the
# logits' matmul), because exp2 is about four times faster than exp on the CPU and
# 2^(l·log2 e) = e^l. The floor and the self logit in those units:
LOG2E = 1.4426950408889634
SELF_LOGIT2 = SELF_LOGIT * LOG2E
EXP2_FLOOR = EXP_FLOOR * LOG2E


class Rows:
    """Row access to (B, H, Lp, ...) tensors for one (batch, head) group, by position.

    Flattens (B, H, Lp) into one row index so gathers and scatters are index_select and
    index_add on a 2-D view, which are much faster than 4-D gather/scatter on CPU. The
    tensors may have any strides whose (B, H, Lp) steps are whole rows (the (B, Lp, H, D)
    memory of a projection's output seen as (B, H, Lp, D), say), so nothing is copied
    into (B, H, Lp, D) order first.
    """

    def __init__(
        self, layout: Layout, group: tuple[int, int, int, int], device: torch.device
    ) -> None:
        b0, b1, h0, h1 = group
        self.group = group
        self.batches = torch.arange(b0, b1, device=device)[:, None, None]
        self.heads = torch.arange(h0, h1, device=device)[None, :, None]

    def take(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """x (B, H, Lp, D) or (B, H, Lp) at positions (b, h, m) -> (b, h, m[, D])."""
        table, flat = _row_index(x, self.batches, self.heads, positions)
        return table.index_select(0, flat).view(*positions.shape, *x.shape[3:])

    def add(self, target: torch.Tensor, positions: torch.Tensor, values: torch.Tensor) -> None:
        """target (b, h, Lp, D), the group's own buffer or its slice of a (B, H, Lp, D)
        tensor, += values at positions."""
        table, flat = self._local(target, positions)
        table.index_add_(0, flat, values.reshape(-1, table.shape[-1]).to(target.dtype))

    def put(self, target: torch.Tensor, positions: torch.Tensor, values: torch.Tensor) -> None:
        """target (b, h, Lp, D), the group's own buffer, at positions = values."""
        table, flat = self._local(target, positions)
        table.index_copy_(0, flat, values.reshape(-1, table.shape[-1]).to(target.dtype))

    def _local(self, target: torch.Tensor, positions: torch.Tensor):
        b0, _, h0, _ = self.group
        return _row_index(target, self.batches - b0, self.heads - h0, positions)


def rows_addressable(x: torch.Tensor) -> bool:
    """Whether :class:`Rows` can address x (B, H, Lp[, D]) in place: its last dimension is
    contiguous and every other step is a whole number of rows."""
    if x.dim() == 3:
        return True
    row = x.shape[-1]
    return (
        x.stride(-1) == 1
        and x.storage_offset() % row == 0
        and all(stride % row == 0 for stride in x.stride()[:3])
    )


def _row_index(x: torch.Tensor, batches, heads, positions):
    """(2-D row view of x's memory, flat row index of (batches, heads, positions))."""
    if x.dim() == 3:
        x = x.unsqueeze(-1)
    row = x.shape[-1]
    step_b, step_h, step_l = (stride // row for stride in x.stride()[:3])
    extent = (
        sum((size - 1) * stride for size, stride in zip(x.shape[:3], x.stride()[:3], strict=True))
        // row
        + 1
    )
    table = x.as_strided((extent, row), (row, 1), x.storage_offset())
    flat = (batches * step_b + heads * step_h + positions * step_l).reshape(-1)
    return table, flat


class Workspace:
    """Buffers that every slice of one call reuses, by name, for its large temporaries.

    On the CPU a fresh multi-MiB tensor is fresh pages from the kernel (glibc maps large
    blocks and unmaps them when freed), and faulting them in cost more than the ops that
    fill them. Each buffer grows to the largest slice and lives for the call, which is no
    more than the peak one slice already had.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.buffers: dict[tuple[str, torch.dtype], torch.Tensor] = {}

    def get(self, name: str, shape, dtype: torch.dtype) -> torch.Tensor:
        """An uninitialised (shape) tensor of dtype, the same memory on every call."""
        size = math.prod(shape)
        buffer = self.buffers.get((name, dtype))
        if buffer is None or buffer.numel() < size:
            buffer = torch.empty(size, dtype=dtype, device=self.device)
            self.buffers[(name, dtype)] = buffer
        return buffer[:size].view(shape)


def round_chunks(sort_idx: torch.Tensor, layout: Layout, dtype: torch.dtype) -> torch.Tensor:
    """Chunk of each position within each round: (B, H, Lp, R) in ``dtype``.

    Position-major so one row gather reads a key's chunk in every round; float so the
    duplicate test in :func:`_mask_seen_before` is a few fast vector ops (chunk numbers are
    exact in float32 up to 2^24).
    """
    return round_chunk(sort_idx, layout).to(dtype).transpose(2, 3).contiguous()


@dataclass
class Slice:
    """Recomputable tensors of one slice: a (batch, head) group, one round, chunks [n0, n1)."""

    query_pos: torch.Tensor  # (b, h, n·c) positions of the queries, in sorted order
    key_pos: torch.Tensor  # (b, h, n·c + c) key positions, look-back chunk first
    queries: torch.Tensor  # (b, h, n, c, D) pre-scaled by 1/sqrt(D)
    keys: torch.Tensor  # (b, h, n, w, D) unit-length keys, w = 2c (c without look-back)
    values: torch.Tensor  # (b, h, n, w, Dv)
    # (b, h, n, c, w) float32 (float64 for float64 inputs): base-2 logits,
    # log2(e)·q·k̂/sqrt(D) plus the mask bias; the query's own slot holds SELF_LOGIT2 plus
    # its bias.
    logits: torch.Tensor
    # (b, h, c, c) bool: the query's own position among the look-back keys of the round's
    # first chunk (there it is the previous round's slot), or None when the slice holds no
    # such chunk. Every other own slot is the diagonal of the own half of the window.
    first_self: torch.Tensor | None

    def zero_self(self, grad_logits: torch.Tensor) -> None:
        """No gradient flows through the constant self logit."""
        _own_diagonal(grad_logits).zero_()
        if self.first_self is not None:
            c = self.first_self.shape[-1]
            grad_logits[:, :, 0, :, :c].masked_fill_(self.first_self, 0.0)


def build_slice(
    qk,
    v,
    sort_idx,
    key_valid,
    chunk_of,
    layout: Layout,
    rows: Rows,
    group: tuple[int, int, int, int],
    rnd: int,
    chunks: tuple[int, int],
    ws: Workspace,
) -> Slice:
    """Gather one slice and compute its biased logits (one matmul adds the mask bias).

    ``chunk_of`` is :func:`round_chunks`' table when the duplicate correction applies;
    the slice's large tensors live in ``ws``.
    """
    b0, b1, h0, h1 = group
    n0, n1 = chunks
    c, n_chunks = layout.chunk, n1 - n0
    order = sort_idx[b0:b1, h0:h1, rnd]  # (b, h, Lp)
    query_pos = order[..., n0 * c : n1 * c]
    if not layout.look_back:
        key_pos = query_pos
    elif n0 > 0:
        key_pos = order[..., (n0 - 1) * c : n1 * c]
    else:
        # The first chunk of a round looks back into the last chunk of the previous round.
        previous = sort_idx[b0:b1, h0:h1, (rnd - 1) % layout.n_hashes, -c:]
        key_pos = torch.cat([previous, query_pos], dim=-1)
    queries = (rows.take(qk, query_pos) * layout.scale).unflatten(2, (n_chunks, c))
    # Normalised in float32: F.normalize's eps (1e-12) is 0 in float16, and a zero row
    # (a padded position) would give NaN keys whose zero weights still poison matmuls.
    wide = torch.promote_types(qk.dtype, torch.float32)
    keys = F.normalize(rows.take(qk, key_pos).to(wide), dim=-1).to(qk.dtype)
    keys = _dense_windows(keys, layout, n_chunks, ws, "keys")
    values = _dense_windows(rows.take(v, key_pos), layout, n_chunks, ws, "values")

    compute = torch.float64 if qk.dtype == torch.float64 else torch.float32
    first_self = None
    if layout.look_back and n0 == 0 and layout.n_hashes > 1:
        first_self = query_pos[..., :c, None] == key_pos[..., None, :c]
    bias = _bias(query_pos, key_pos, key_valid, chunk_of, layout, rows, group, rnd, n0, compute, ws)
    if bias is None:
        own_self = torch.full((), SELF_LOGIT2, dtype=compute, device=qk.device)
        first_bias = own_self
        bias = ws.get("logits", queries.shape[:-1] + (layout.window,), compute)
        keep = 0.0
    else:
        # The bias at the self slots survives the fill below, so a padded or duplicate
        # self occurrence stays masked.
        own_self = SELF_LOGIT2 + MASK_SCALE * _own_diagonal(bias)
        first_bias = None
        if first_self is not None:
            first_bias = SELF_LOGIT2 + MASK_SCALE * bias[:, :, 0, :, :c]
        keep = MASK_SCALE
    if qk.dtype == compute:
        # One matmul forms bias + log2(e)·q·k̂ in place.
        flat_queries = queries.reshape(-1, c, queries.shape[-1])
        flat_keys = keys.reshape(-1, layout.window, keys.shape[-1]).transpose(1, 2)
        flat = bias.view(-1, c, layout.window)
        # The out= form rather than baddbmm_: torch's FLOP counter sees it.
        torch.baddbmm(flat, flat_queries, flat_keys, beta=keep, alpha=LOG2E, out=flat)
        logits = bias
    else:  # half precision: the matmul in its dtype, the bias in float32
        scores = torch.matmul(queries, keys.transpose(-1, -2))
        logits = bias.mul_(keep).add_(scores, alpha=LOG2E)
    _own_diagonal(logits).copy_(own_self)
    if first_self is not None:
        assert first_bias is not None  # set with first_self
        head = logits[:, :, 0, :, :c]
        head.copy_(torch.where(first_self, first_bias, head))
    return Slice(query_pos, key_pos, queries, keys, values, logits, first_self)


def _own_diagonal(x: torch.Tensor) -> torch.Tensor:
    """The own slot of each query in x (b, h, n, c, w): a (b, h, n, c) view."""
    c = x.shape[-2]
    return x[..., -c:].diagonal(dim1=-2, dim2=-1)


def _bias(
    query_pos, key_pos, key_valid, chunk_of, layout: Layout, rows: Rows, group, rnd, n0, dtype, ws
):
    """(b, h, n, c, w) mask: 0 where a query may see a window key, at most -0.75 where the
    key is in its future, padding, or an occurrence of a key already seen (the matmul
    scales it by MASK_SCALE). None when nothing is masked.

    Built as the minimum of one term per reason, each exactly 1 when the key is visible
    and at most 0.25 when not, so each reason costs one or two passes and the result one
    subtraction.
    """
    b0, b1, h0, h1 = group
    c = layout.chunk
    n_chunks = query_pos.shape[-1] // c
    shape = (b1 - b0, h1 - h0, n_chunks, c, layout.window)
    visible = None
    if layout.causal:
        q_pos = query_pos.to(dtype).unflatten(-1, (n_chunks, c)).unsqueeze(-1)
        k_pos = _windows(key_pos.to(dtype).unsqueeze(-1), layout, n_chunks).transpose(-1, -2)
        # q - k + 1 is at least 1 exactly for keys at or before the query.
        visible = ws.get("logits", shape, dtype)
        torch.sub(q_pos + 1, k_pos, out=visible).clamp_max_(1.0)
    if key_valid is not None:
        valid = key_valid[b0:b1].unsqueeze(1).expand(-1, h1 - h0, -1).gather(-1, key_pos)
        valid = _windows(valid.to(dtype).unsqueeze(-1), layout, n_chunks).transpose(-1, -2)
        if visible is None:
            visible = ws.get("logits", shape, dtype).copy_(valid.expand(shape))
        else:
            torch.minimum(visible, valid, out=visible)
    if layout.needs_counts:
        if visible is None:
            visible = ws.get("logits", shape, dtype).fill_(1.0)
        scratch = ws.get("scratch", shape, dtype)
        _mask_seen_before(visible, scratch, query_pos, key_pos, chunk_of, layout, rows, rnd, n0)
    return None if visible is None else visible.sub_(1.0)


def _mask_seen_before(
    visible, scratch, query_pos, key_pos, chunk_of, layout: Layout, rows, rnd, n0
):
    """Mask, in ``visible``, every occurrence of a key but one for each query (the
    duplicate correction).

    A query in round r', chunk C sees chunks C and C-1 of the rounds laid end to end: its
    own round's chunks C and C-1, or, for a round's first chunk, the previous round's last
    chunk. The kept occurrence of key j for query i is the one in the earliest round whose
    window holds j (and, in a round's first chunk, the own chunk's rather than the
    look-back's). So this slice's occurrence is masked when j is in i's window in an earlier
    round r' < r: chunk_r'(i) - chunk_r'(j) is 0 or 1, or i is in round r''s first chunk
    and j in round r'-1's last. Half the rounds are tested on average, three vector passes
    each, with no per-pair count to divide by.
    """
    c, n_rounds = layout.chunk, layout.n_hashes
    n_chunks = query_pos.shape[-1] // c
    last = layout.chunks_per_round - 1
    q_chunk = rows.take(chunk_of, query_pos).unflatten(2, (n_chunks, c))  # (b, h, n, c, R)
    k_chunk = _windows(rows.take(chunk_of, key_pos), layout, n_chunks)  # (b, h, n, w, R)
    flat = visible.view(-1, layout.window)
    for earlier in range(rnd):
        q = q_chunk[..., earlier].unsqueeze(-1)  # (b, h, n, c, 1)
        k = k_chunk[..., earlier].unsqueeze(-2) + 0.5  # (b, h, n, 1, w)
        # (d - 0.5)^2 is 0.25 for a chunk difference d of 0 or 1, at least 2.25 otherwise.
        torch.minimum(visible, torch.sub(q, k, out=scratch).square_(), out=visible)
        if not layout.look_back:
            continue
        # Queries in round r''s first chunk also saw round r'-1's last chunk: few rows.
        if visible.is_meta:  # which rows is data; meta tensors (FLOP counting) have none
            continue
        first = (q_chunk[..., earlier] == 0).flatten().nonzero().squeeze(1)
        if first.numel():
            before = k_chunk[..., (earlier - 1) % n_rounds] == last  # (b, h, n, w)
            hidden = before.flatten(0, 2).index_select(0, first // c)
            flat.index_copy_(0, first, flat.index_select(0, first).masked_fill_(hidden, 0.0))
    if layout.look_back and n0 == 0 and n_rounds > 1:
        # The round's first chunk: a look-back key that is also in the own chunk.
        again = k_chunk[:, :, 0, :c, rnd] == 0  # (b, h, c)
        visible[:, :, 0, :, :c].masked_fill_(again.unsqueeze(-2), 0.0)


def _dense_windows(
    x: torch.Tensor, layout: Layout, n_chunks: int, ws: Workspace, name: str
) -> torch.Tensor:
    """:func:`_windows` as a contiguous tensor in ``ws``, built by one concatenation of the
    two halves (a matmul would otherwise copy the overlapping view element by element)."""
    c = layout.chunk
    if not layout.look_back:
        return x.unflatten(2, (n_chunks, c))
    blocks = x.unflatten(2, (n_chunks + 1, c))
    out = ws.get(name, (*x.shape[:2], n_chunks, 2 * c, x.shape[-1]), x.dtype)
    return torch.cat([blocks[:, :, :-1], blocks[:, :, 1:]], dim=3, out=out)


def _windows(x: torch.Tensor, layout: Layout, n_chunks: int) -> torch.Tensor:
    """(b, h, n·c [+ c], D) key-ordered -> (b, h, n, w, D): each chunk with its look-back."""
    c = layout.chunk
    if not layout.look_back:
        return x.unflatten(2, (n_chunks, c))
    return x.unfold(2, 2 * c, c).transpose(-1, -2)


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
    c = layout.chunk
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
                        qk, v, sort_idx, key_valid, chunk_of, layout, rows, group, rnd, (n0, n1), ws
                    )
                    # A row with every key masked (a padded query, or one whose keys were
                    # all seen in an earlier round) gets weight 0 everywhere: its maximum
                    # is at least the self logit, far above any masked logit.
                    row_max = piece.logits.amax(dim=-1, keepdim=True).clamp_min_(SELF_LOGIT2)
                    weights = _weights(piece.logits, row_max)
                    total = weights.sum(dim=-1, keepdim=True).clamp_min_(torch.finfo(acc).tiny)
                    # Normalised after the matmul: c·Dv divisions instead of c·2c.
                    part = torch.matmul(weights.to(v.dtype), piece.values).to(acc).div_(total)
                    rows.put(round_out, piece.query_pos, part.flatten(2, 3))
                    rows.put(round_max, piece.query_pos, row_max.flatten(2, 3))
                    rows.put(round_sum, piece.query_pos, total.flatten(2, 3))
                merged = _merge_round(merged, round_out, round_max, round_sum)
            assert merged is not None  # layout.n_hashes >= 1
            group_out, group_max, group_sum = merged
            out[b0:b1, h0:h1] = group_out
            lse_max[b0:b1, h0:h1] = group_max.squeeze(-1)
            lse_log_sum[b0:b1, h0:h1] = group_sum.log().squeeze(-1)
        ctx.layout = layout
        ctx.save_for_backward(qk, v, sort_idx, key_valid, lse_max, lse_log_sum, out)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        qk, v, sort_idx, key_valid, lse_max, lse_log_sum, out = ctx.saved_tensors
        layout: Layout = ctx.layout
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
                        qk, v, sort_idx, key_valid, chunk_of, layout, rows, group, rnd, (n0, n1), ws
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
                    q_delta = _take_local(rows, delta, piece.query_pos, grid).unsqueeze(-1)
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


def _take_local(rows: Rows, x: torch.Tensor, positions: torch.Tensor, grid) -> torch.Tensor:
    """A group's own (b, h, Lp) tensor at positions (b, h, n·c) -> (b, h, n, c)."""
    table, flat = rows._local(x, positions)
    return table.index_select(0, flat).view(positions.shape).unflatten(-1, grid)


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
