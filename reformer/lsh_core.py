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
Work is done in slices of (head group, round, block of chunks) whose size is bounded, so
transient memory does not grow with L.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

# The self logit: a position attends to itself only when it has nothing else to see.
SELF_LOGIT = -1e5
# Masked pairs (causal, padding), so they never set a row's maximum; their weights are then
# zeroed exactly.
MASK_LOGIT = -1e9
# exp() of anything below about -87 gives a float32 denormal or underflows, and x86 takes
# a microcode slow path for those (25-100x slower here). Shifted logits are clamped to
# this floor first; masked pairs are then zeroed exactly, and a self pair that is not
# alone keeps a weight of exp(-87) ~ 1.6e-38 instead of exp(-1e5): no measurable change.
EXP_FLOOR = -87.0
# Logit elements per slice (batch × heads × chunks × c × 2c): bounds transient memory.
SLICE_ELEMENTS = 1 << 22
# A (batch, head) whose round has this many logits is processed on its own (see groups()).
SOLO_ELEMENTS = 1 << 18


@dataclass(frozen=True)
class Layout:
    """Shape of the sorted, chunked sequence for one call."""

    batch: int
    n_heads: int
    n_hashes: int
    padded_len: int  # Lp, a multiple of chunk
    chunk: int  # bucket_size c
    causal: bool
    dup_correction: bool
    scale: float

    @property
    def chunks_per_round(self) -> int:
        return self.padded_len // self.chunk

    @property
    def total_chunks(self) -> int:
        return self.n_hashes * self.chunks_per_round

    @property
    def look_back(self) -> bool:
        # With one chunk in all, its "previous chunk" is itself: seeing it twice adds nothing.
        return self.total_chunks > 1

    @property
    def window(self) -> int:
        return 2 * self.chunk if self.look_back else self.chunk

    @property
    def needs_counts(self) -> bool:
        # With one round a key has one slot, so it appears at most once in any window.
        return self.dup_correction and self.n_hashes > 1

    def groups(self):
        """Yield (b0, b1, h0, h1): the (batch, head) ranges processed together.

        A long sequence goes one (batch, head) at a time: its chunk windows are then
        strided views that batched matmul reads without copying. Short sequences group
        the whole batch and as many heads as fit one slice, to keep Python overhead low.
        """
        per_head = self.padded_len * self.window
        if per_head >= SOLO_ELEMENTS or self.batch * per_head > SLICE_ELEMENTS:
            for b in range(self.batch):
                for h in range(self.n_heads):
                    yield b, b + 1, h, h + 1
            return
        heads = max(1, min(self.n_heads, SLICE_ELEMENTS // (self.batch * per_head)))
        for h in range(0, self.n_heads, heads):
            yield 0, self.batch, h, min(h + heads, self.n_heads)

    def chunk_blocks(self, group_size: int):
        """Yield (n0, n1): blocks of chunks of one round, bounding a slice's logits."""
        step = max(1, SLICE_ELEMENTS // (group_size * self.chunk * self.window))
        step = min(step, self.chunks_per_round)
        for start in range(0, self.chunks_per_round, step):
            yield start, min(start + step, self.chunks_per_round)


def chunk_ids(sort_idx: torch.Tensor, layout: Layout) -> torch.Tensor:
    """Global chunk of each (round, position): (B, H, R, Lp), round r's in [r·N, (r+1)·N)."""
    rank = torch.empty_like(sort_idx)
    ranks = torch.arange(layout.padded_len, device=sort_idx.device).expand_as(sort_idx)
    rank.scatter_(-1, sort_idx, ranks)
    offsets = torch.arange(layout.n_hashes, device=sort_idx.device).view(1, 1, -1, 1)
    return (offsets * layout.chunks_per_round + rank // layout.chunk).to(torch.int32)


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


@dataclass
class Slice:
    """Recomputable tensors of one slice: a (batch, head) group, one round, chunks [n0, n1)."""

    query_pos: torch.Tensor  # (b, h, n·c) positions of the queries, in sorted order
    key_pos: torch.Tensor  # (b, h, n·c + c) key positions, look-back chunk first
    queries: torch.Tensor  # (b, h, n, c, D) pre-scaled by 1/sqrt(D)
    keys: torch.Tensor  # (b, h, n, w, D) unit-length keys, w = 2c (c without look-back)
    values: torch.Tensor  # (b, h, n, w, Dv)
    logits: torch.Tensor  # (b, h, n, c, w) float32 (float64 for float64 inputs)
    is_self: torch.Tensor  # (b, h, n, c, w) bool: the query's own slot (constant logit)
    masked: torch.Tensor | None  # (b, h, n, c, w) bool: causal or padding, zero weight
    counts: torch.Tensor | None  # (b, h, n, c, w) occurrences of each key, or None


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
) -> Slice:
    """Gather one slice and compute its masked logits."""
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
    keys = _windows(keys, layout, n_chunks)
    values = _windows(rows.take(v, key_pos), layout, n_chunks)

    compute = torch.float64 if qk.dtype == torch.float64 else torch.float32
    logits = torch.matmul(queries, keys.transpose(-1, -2)).to(compute)
    q_pos = query_pos.unflatten(-1, (n_chunks, c)).unsqueeze(-1)  # (b, h, n, c, 1)
    k_pos = _windows(key_pos.unsqueeze(-1), layout, n_chunks).squeeze(-1).unsqueeze(-2)
    is_self = q_pos == k_pos
    logits.masked_fill_(is_self, SELF_LOGIT)
    masked = k_pos > q_pos if layout.causal else None
    if key_valid is not None:
        valid = key_valid[b0:b1].unsqueeze(1).expand(-1, h1 - h0, -1).gather(-1, key_pos)
        invalid = ~_windows(valid.unsqueeze(-1), layout, n_chunks).squeeze(-1).unsqueeze(-2)
        masked = invalid if masked is None else masked | invalid
    if masked is not None:
        logits.masked_fill_(masked, MASK_LOGIT)
    counts = None
    if layout.needs_counts:
        counts = _occurrence_counts(chunk_of[b0:b1, h0:h1], query_pos, key_pos, layout, rnd, chunks)
    return Slice(query_pos, key_pos, queries, keys, values, logits, is_self, masked, counts)


def _windows(x: torch.Tensor, layout: Layout, n_chunks: int) -> torch.Tensor:
    """(b, h, n·c [+ c], D) key-ordered -> (b, h, n, w, D): each chunk with its look-back."""
    c = layout.chunk
    if not layout.look_back:
        return x.unflatten(2, (n_chunks, c))
    return x.unfold(2, 2 * c, c).transpose(-1, -2)


def _occurrence_counts(
    chunk_of, query_pos, key_pos, layout: Layout, rnd: int, chunks: tuple[int, int]
):
    """How many (round, slot) occurrences of each window key the query saw in all rounds.

    A query in round r, chunk C sees chunks C and C-1 (mod total). A key's slot in chunk
    C-1 belongs to round r or, when C is a round's first chunk, to round r-1; chunk ranges
    of rounds are disjoint, so three comparisons per round find every occurrence. In the
    slice's own round every window slot is one occurrence, and only the round's first
    chunk (whose look-back lies in the previous round) can hold a key twice.
    Returns (b, h, n, c, w) uint8, at least 1 for every window pair.
    """
    n_rounds, total = layout.n_hashes, layout.total_chunks
    n_chunks = chunks[1] - chunks[0]
    q_chunks = chunk_of.gather(-1, query_pos.unsqueeze(2).expand(-1, -1, n_rounds, -1))
    k_chunks = chunk_of.gather(-1, key_pos.unsqueeze(2).expand(-1, -1, n_rounds, -1))
    q_chunks = q_chunks.unflatten(-1, (n_chunks, layout.chunk)).unsqueeze(-1)  # (b,h,R,n,c,1)
    k_chunks = _windows(k_chunks.flatten(0, 1).unsqueeze(-1), layout, n_chunks)
    k_chunks = k_chunks.squeeze(-1).unflatten(0, q_chunks.shape[:2]).unsqueeze(-2)

    def add_round(counts, q_chunks, k_chunks, other: int) -> None:
        own, prev = q_chunks[:, :, other], (q_chunks[:, :, other] - 1) % total
        counts += k_chunks[:, :, other] == own
        counts += k_chunks[:, :, other] == prev
        counts += k_chunks[:, :, (other - 1) % n_rounds] == prev

    counts = torch.ones(
        q_chunks.shape[:2] + (n_chunks, layout.chunk, layout.window),
        dtype=torch.uint8,
        device=query_pos.device,
    )
    for other in range(n_rounds):
        if other != rnd:
            add_round(counts, q_chunks, k_chunks, other)
    if chunks[0] == 0:
        first = counts[:, :, :1]
        first -= 1
        add_round(first, q_chunks[:, :, :, :1], k_chunks[:, :, :, :1], rnd)
    return counts


def _weights(piece: Slice, shift: torch.Tensor) -> torch.Tensor:
    """exp(logits - shift) / counts: each occurrence's unnormalised weight (in place)."""
    weights = piece.logits.sub_(shift).clamp_min_(EXP_FLOOR).exp_()
    if piece.masked is not None:
        weights.masked_fill_(piece.masked, 0.0)
    if piece.counts is not None:
        weights.div_(piece.counts)
    return weights


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
        chunk_of = chunk_ids(sort_idx, layout) if layout.needs_counts else None
        acc = torch.float64 if qk.dtype == torch.float64 else torch.float32
        length, d_value = qk.shape[2], v.shape[-1]
        out = _sequence_major(v.shape, v.dtype, v.device)
        lse_max = torch.empty(qk.shape[:3], dtype=acc, device=v.device)
        lse_log_sum = torch.empty_like(lse_max)
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
                        qk, v, sort_idx, key_valid, chunk_of, layout, rows, group, rnd, (n0, n1)
                    )
                    row_max = piece.logits.amax(dim=-1, keepdim=True)
                    weights = _weights(piece, row_max)
                    # A query that sees only masked keys (a padded one) gets output 0, not NaN.
                    total = weights.sum(dim=-1, keepdim=True).clamp_min_(torch.finfo(acc).tiny)
                    part = torch.matmul(weights.div_(total).to(v.dtype), piece.values)
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
        chunk_of = chunk_ids(sort_idx, layout) if layout.needs_counts else None
        acc = lse_max.dtype
        grad_out = _addressable(grad_out)
        # Gradients are written straight into their (B, Lp, H, D) memory, which is what the
        # projections' backward reads, and accumulated there when acc is their dtype; a
        # group's float32 accumulators are needed only for half-precision inputs.
        grad_qk = _sequence_major(qk.shape, qk.dtype, qk.device, zero=True)
        grad_v = _sequence_major(v.shape, v.dtype, v.device, zero=True)
        direct = qk.dtype == acc
        for group in layout.groups():
            b0, b1, h0, h1 = group
            rows = Rows(layout, group, qk.device)
            qk_group = qk[b0:b1, h0:h1]
            # rowsum(dO · O) (b, h, Lp): one group at a time bounds the product's size.
            delta = _row_dot(grad_out[b0:b1, h0:h1], out[b0:b1, h0:h1], acc)
            grad_q = grad_qk[b0:b1, h0:h1] if direct else torch.zeros_like(qk_group, dtype=acc)
            grad_values = (
                grad_v[b0:b1, h0:h1] if direct else torch.zeros_like(v[b0:b1, h0:h1], dtype=acc)
            )
            grad_keys = torch.zeros_like(qk_group, dtype=acc, memory_format=torch.contiguous_format)
            for rnd in range(layout.n_hashes):
                for n0, n1 in layout.chunk_blocks((b1 - b0) * (h1 - h0)):
                    piece = build_slice(
                        qk, v, sort_idx, key_valid, chunk_of, layout, rows, group, rnd, (n0, n1)
                    )
                    grid = piece.logits.shape[2:4]
                    q_max = rows.take(lse_max, piece.query_pos).unflatten(-1, grid).unsqueeze(-1)
                    q_log_sum = rows.take(lse_log_sum, piece.query_pos).unflatten(-1, grid)
                    # (b, h, n, c, w): the final attention weights, exp(logit - max - log sum)
                    probs = _weights(piece, q_max).mul_(q_log_sum.neg().exp_().unsqueeze(-1))
                    d_out = rows.take(grad_out, piece.query_pos).unflatten(2, grid)
                    q_delta = _take_local(rows, delta, piece.query_pos, grid)
                    _add_windows(rows, grad_values, piece.key_pos, probs.to(v.dtype), d_out, layout)
                    grad_probs = torch.matmul(d_out, piece.values.transpose(-1, -2)).to(acc)
                    del d_out
                    grad_logits = grad_probs.sub_(q_delta.unsqueeze(-1)).mul_(probs)
                    del probs
                    # The self logit is a constant: no gradient flows through it. Masked
                    # pairs need no fill: their probs are exactly 0.
                    grad_logits.masked_fill_(piece.is_self, 0.0)
                    grad_logits = grad_logits.to(qk.dtype)
                    grad_query = torch.matmul(grad_logits, piece.keys).flatten(2, 3)
                    rows.add(grad_q, piece.query_pos, grad_query.mul_(layout.scale))
                    del grad_query
                    _add_windows(rows, grad_keys, piece.key_pos, grad_logits, piece.queries, layout)
                    del piece, grad_logits
            del delta
            grad_q.add_(_normalize_backward_(qk_group, grad_keys))
            del grad_keys
            if not direct:
                grad_qk[b0:b1, h0:h1] = grad_q
                grad_v[b0:b1, h0:h1] = grad_values
            del grad_q, grad_values
        return grad_qk, grad_v, None, None, None


def _addressable(x: torch.Tensor) -> torch.Tensor:
    """x itself when :class:`Rows` can address it in place, else a contiguous copy."""
    return x if rows_addressable(x) else x.contiguous()


def _sequence_major(shape, dtype, device, zero: bool = False) -> torch.Tensor:
    """A (B, H, Lp, D) tensor laid out as (B, Lp, H, D): the layout the attention module
    reads from and writes to its (B, Lp, H·D) projections, so neither side copies."""
    batch, heads, length, dim = shape
    make = torch.zeros if zero else torch.empty
    return make(batch, length, heads, dim, dtype=dtype, device=device).transpose(1, 2)


def _row_dot(a: torch.Tensor, b: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """sum(a · b, -1) in ``dtype``: (b, h, Lp, D) x2 -> (b, h, Lp), contiguous."""
    return (a.to(dtype) * b.to(dtype)).sum(-1).contiguous()


def _take_local(rows: Rows, x: torch.Tensor, positions: torch.Tensor, grid) -> torch.Tensor:
    """A group's own (b, h, Lp) tensor at positions (b, h, n·c) -> (b, h, n, c)."""
    table, flat = rows._local(x, positions)
    return table.index_select(0, flat).view(positions.shape).unflatten(-1, grid)


def _merge_round(merged, round_out, round_max, round_sum):
    """Merge one round's normalised output into the running (out, max, sum) (Reformer sec. 2:
    out = sum_r o_r · exp(lse_r - logsumexp_r lse_r), with lse_r = max_r + log sum_r).

    round_out (b, h, Lp, Dv) is the round's softmax output; round_max and round_sum
    (b, h, Lp, 1) are its row maximum and sum of exp(logit - max) / count. The maximum and
    the sum are kept apart rather than folded into one lse: a row that sees only itself
    has max = SELF_LOGIT = -1e5 in every round, where float32 is spaced 0.0078, so an lse
    formed there would carry that rounding into the round weights. Kept apart,
    exp(max_r - max) is exactly 1 for such rows, and the running-mean update
    out += (o_r - out) · w_r leaves out exactly v when every round gives v.
    Returns the new (out, max, sum); out is updated in place.
    """
    if merged is None:
        return round_out, round_max, round_sum
    out, run_max, run_sum = merged
    new_max = torch.maximum(run_max, round_max)
    old_part = run_sum * torch.exp(run_max - new_max)
    new_part = round_sum * torch.exp(round_max - new_max)
    new_sum = old_part + new_part
    out.add_(round_out.sub_(out).mul_(new_part / new_sum))
    return out, new_max, new_sum


def _normalize_backward_(x: torch.Tensor, grad_unit: torch.Tensor) -> torch.Tensor:
    """Gradient through k = x / max(||x||, eps) (F.normalize's eps), given dL/dk, written
    into ``grad_unit`` (which is returned): (grad - [||x|| > eps] · k (k · grad)) / max(||x||,
    eps), with one (..., D) temporary besides it."""
    x = x.to(grad_unit.dtype)
    norm = x.norm(dim=-1, keepdim=True)
    clamped = norm.clamp_min(1e-12)
    unit = x / clamped
    radial = (unit * grad_unit).sum(-1, keepdim=True)
    radial.masked_fill_(norm <= 1e-12, 0.0)
    return grad_unit.sub_(unit.mul_(radial)).div_(clamped)
