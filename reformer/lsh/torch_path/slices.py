"""One slice of the torch path's work (a (batch, head) group, one round, a block of
chunks): its gathered queries, keys and values and its biased base-2 logits, with every
mask (causal, padding, the duplicate correction) folded into one bias that the logits'
own matmul adds."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from reformer.lsh.layout import SELF_LOGIT, Layout, round_chunk
from reformer.lsh.torch_path.rows import Rows, Workspace

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
# Below every pair the masks leave visible (a logit of at least SELF_LOGIT2, or a score),
# above every masked one (at most -0.75 × MASK_SCALE plus a score).
VISIBLE_FLOOR = -0.5 * MASK_SCALE


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
    c, n_chunks = layout.bucket_size, n1 - n0
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


def finite_values(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(v, None) when every entry of v (B, H, Lp, Dv) is finite; else (v with NaN and inf
    read as 0, in v's layout, and the (B, H, Lp) bool of positions whose v held one).

    A masked pair's weight is exactly 0, but 0 · NaN is NaN: the slices' matmuls (P·V
    forward, dO·Vᵀ backward) must only ever see finite values. A query that may see a bad
    key is marked by :func:`sees_bad` instead. One pass over v per call checks it."""
    if v.device.type == "meta":  # shapes only (FLOP and memory counting): no values
        return v, None
    finite = torch.isfinite(v)
    if bool(finite.all()):
        return v, None
    return torch.where(finite, v, 0.0), ~finite.all(-1)


def sees_bad(piece: Slice, bad: torch.Tensor, layout: Layout, rows: Rows) -> torch.Tensor:
    """(b, h, n, c) bool: which queries of the slice may see (a pair the masks leave
    visible) a key whose v held NaN or inf; ``bad`` is :func:`finite_values`' (B, H, Lp).
    Call it before the logits become weights. A duplicate occurrence the correction masks
    here is visible in the window that keeps it, so those queries are marked there."""
    n_chunks = piece.logits.shape[2]
    bad_keys = _windows(rows.take(bad, piece.key_pos).unsqueeze(-1), layout, n_chunks)
    visible = piece.logits > VISIBLE_FLOOR
    return (visible & bad_keys.transpose(-1, -2)).any(-1)


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
    c = layout.bucket_size
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
    c, n_rounds = layout.bucket_size, layout.n_hashes
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
    c = layout.bucket_size
    if not layout.look_back:
        return x.unflatten(2, (n_chunks, c))
    blocks = x.unflatten(2, (n_chunks + 1, c))
    out = ws.get(name, (*x.shape[:2], n_chunks, 2 * c, x.shape[-1]), x.dtype)
    return torch.cat([blocks[:, :, :-1], blocks[:, :, 1:]], dim=3, out=out)


def _windows(x: torch.Tensor, layout: Layout, n_chunks: int) -> torch.Tensor:
    """(b, h, n·c [+ c], D) key-ordered -> (b, h, n, w, D): each chunk with its look-back."""
    c = layout.bucket_size
    if not layout.look_back:
        return x.unflatten(2, (n_chunks, c))
    return x.unfold(2, 2 * c, c).transpose(-1, -2)
