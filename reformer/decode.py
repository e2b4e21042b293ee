"""Incremental decoding caches: one new token per call, per layer (Reformer sec. 2, applied
to generation).

Prefill runs the prompt through the normal forward and fills a cache per layer; each new
token is then one step per layer that reads the cache and appends to it. Two caches:

- :class:`KVCache`, for exact attention ("full", "sdpa" and the Transformer baseline):
  keys and values of every past position, (B, H, T, d_head) each. A token costs O(T).
- :class:`LSHCache`, for shared-QK LSH attention. It holds *one* vector per position, the
  attention's normalised input x (B, T, d_model), from which the selected keys' qk and v are
  recomputed (shared QK: one vector serves as key and value source), plus a bucket table:
  for every (batch, head, round, bucket) the most recent ``bucket_size`` positions hashed
  there. A token costs O(n_hashes · bucket_size), whatever the context.

The LSH decoding rule. Rotations R (H, d_head, n_hashes, n_buckets/2) are drawn once per
generation from the layer's own generator; n_buckets is resolved for the generation's
whole length as the forward would (2·T/bucket_size, factorised when large). The query at
position t, with bucket b_r(t) in round r, attends to

    K(t) = W(t) ∪ ⋃_r M_r(t)      each key counted once (a union, whatever dup_correction)
    W(t)   = {s : t - bucket_size <= s < t}                        the recent window
    M_r(t) = the bucket_size most recent s < t with b_r(s) = b_r(t)  its bucket-mates

plus itself with the self logit -1e5, so it sees itself only when K(t) is empty (t = 0),
as in the forward. At most (n_hashes + 1) · bucket_size keys: the same budget per round
as trax's predict mode, which also prefers same-bucket and then recent positions. Why this
cap: with the default 2·T/bucket_size buckets a bucket holds bucket_size / 2 positions on
average, so keeping bucket_size per bucket rarely drops a mate, and the most recent are
kept (as trax does) when one overflows. The window makes short contexts exact: when the
whole context fits one chunk (T <= bucket_size) every past position is seen, so the logits
equal the full forward's, which then is one chunk of exact attention. The key set is a
function of the past only (causal by construction). Finding mates reads one table row per
round: no sort or scan of the history.

Ragged batches (left padding). A cache's positions are slots shared by the batch; row b's
real tokens start at slot ``first[b]`` (its left padding before that), set once at prefill
(:meth:`KVCache.set_first`, :meth:`LSHCache.set_first`). A padded slot never enters a key
set: the KV cache masks it, the LSH cache never lists it in its bucket table and cuts its
recent window at ``first[b]``. So in real positions (slot - first[b]) the window is
W(t) of the row alone, and its bucket-mates are those of the row alone whenever its
rotations are (same n_buckets, same draw).
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F

from reformer.lsh.hashing import draw_rotations, hash_vectors, resolve_n_buckets, total_buckets
from reformer.lsh.layout import SELF_LOGIT

_FUSED = contextvars.ContextVar("reformer_fused_decode", default=True)


@contextlib.contextmanager
def fused_decode(enabled: bool) -> Iterator[None]:
    """LSH caches made inside this block take the fused CPU step (``enabled``, the
    default wherever the kernel runs) or the torch step (False): to compare the two."""
    token = _FUSED.set(bool(enabled))
    try:
        yield
    finally:
        _FUSED.reset(token)


def fused_decode_enabled() -> bool:
    """Whether caches made now may take the fused step (see :func:`fused_decode`)."""
    return _FUSED.get()


class KVCache:
    """Keys and values of past positions, each (B, H, capacity, d_head), filled in order."""

    def __init__(
        self, batch: int, n_heads: int, d_head: int, capacity: int, like: torch.Tensor
    ) -> None:
        shape = (batch, n_heads, capacity, d_head)
        self.keys = torch.empty(shape, dtype=like.dtype, device=like.device)
        self.values = torch.empty(shape, dtype=like.dtype, device=like.device)
        self.length = 0
        self.first: torch.Tensor | None = None  # (B,) first real slot per row; None: all 0

    def set_first(self, first: torch.Tensor | None) -> None:
        """Row b's real tokens start at slot first[b] (B,) int64 (module docstring)."""
        self.first = first

    def key_mask(self, end: int) -> torch.Tensor | None:
        """(B, end) bool, True at the real slots among the first ``end``; None: all real."""
        return real_slots(self.first, 0, end)

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (B, H, n, d_head) after the past; return all keys and values so far."""
        start, end = self.length, self.length + k.shape[2]
        if end > self.keys.shape[2]:
            raise ValueError(f"cache holds {self.keys.shape[2]} positions; {end} were asked")
        self.keys[:, :, start:end] = k
        self.values[:, :, start:end] = v
        self.length = end
        return self.keys[:, :, :end], self.values[:, :, :end]

    def nbytes(self) -> int:
        return self.keys.nbytes + self.values.nbytes


class LSHCache:
    """The LSH decoding cache of one layer (module docstring: what it holds, the rule).

    ``head_weights`` (H, d_model, 2·d_head), the layer's per-head qk and v projections
    that a step recomputes keys with, is set by the layer that makes the cache
    (reformer.lsh.LSHSelfAttention.new_cache): they are fixed for the whole generation.
    """

    def __init__(
        self,
        *,
        batch: int,
        n_heads: int,
        d_head: int,
        n_hashes: int,
        bucket_size: int,
        n_buckets: int | tuple[int, ...] | None,
        capacity: int,
        generator: torch.Generator,
        like: torch.Tensor,
        fused: bool = False,
    ) -> None:
        self.n_heads, self.d_head, self.n_hashes = n_heads, d_head, n_hashes
        self.bucket_size = bucket_size
        self.factors = resolve_n_buckets(n_buckets, capacity, bucket_size)
        self.rotations = draw_rotations(
            generator,
            n_heads=n_heads,
            d_head=d_head,
            n_hashes=n_hashes,
            factors=self.factors,
            device=like.device,
        )
        d_model = n_heads * d_head
        self.inputs = torch.empty(batch, capacity, d_model, dtype=like.dtype, device=like.device)
        n_buckets_total = total_buckets(self.factors)
        # Positions as int32 (contexts below 2^31): the table is most of the cache's bytes
        # beyond the inputs.
        self.table = torch.full(
            (batch, n_heads, n_hashes, n_buckets_total, bucket_size),
            -1,
            dtype=torch.int32,
            device=like.device,
        )
        self.counts = torch.zeros(
            batch, n_heads, n_hashes, n_buckets_total, dtype=torch.int64, device=like.device
        )
        self.length = 0
        self.head_weights: torch.Tensor | None = None  # see the class docstring
        self.first: torch.Tensor | None = None  # (B,) first real slot per row; None: all 0
        # The fused step's own: 1 / ||qk|| of every cached position per head (its keys'
        # normalisation, so no key is recomputed), and its output buffer, reused per token.
        self.fused = fused
        self.inv_norms: torch.Tensor | None = None
        self.out: torch.Tensor | None = None
        if fused:
            self.inv_norms = torch.zeros(batch, capacity, n_heads, dtype=torch.float32)
            self.out = torch.empty(batch, d_model, dtype=torch.float32)
        self._step: Any = None  # the C step bound to these buffers, made on first use

    def set_first(self, first: torch.Tensor | None) -> None:
        """Row b's real tokens start at slot first[b] (B,) int64 (module docstring)."""
        self.first = first
        self._step = None  # bound to the old ``first``

    @property
    def n_buckets(self) -> int | tuple[int, ...]:
        return self.factors if len(self.factors) > 1 else self.factors[0]

    def nbytes(self) -> int:
        norms = 0 if self.inv_norms is None else self.inv_norms.nbytes
        return self.inputs.nbytes + self.table.nbytes + self.counts.nbytes + norms

    def buckets(self, qk: torch.Tensor) -> torch.Tensor:
        """Buckets (B, H, R, n) of qk (B, H, n, d_head) under this generation's rotations."""
        return hash_vectors(qk, self.rotations, self.factors)

    def store(self, x: torch.Tensor, buckets: torch.Tensor, qk: torch.Tensor | None = None) -> None:
        """Append n positions: inputs x (B, n, d_model) and their buckets (B, H, R, n);
        a fused cache also keeps 1 / ||qk|| of each (qk (B, H, n, d_head), recomputed
        from x when not given).

        Each position joins its bucket's list in every round, in position order; a full
        list drops its oldest member (a ring of ``bucket_size`` slots). A padded position
        carries the bucket past the last (n_buckets, as the forward's ``return_buckets``
        gives it) and joins no list: its input is stored and never read."""
        n_new, start, c = x.shape[1], self.length, self.bucket_size
        if start + n_new > self.inputs.shape[1]:
            raise ValueError(f"cache holds {self.inputs.shape[1]} positions; {start + n_new} asked")
        self.inputs[:, start : start + n_new] = x
        if self.inv_norms is not None:
            if qk is None:
                assert self.head_weights is not None  # set by the layer that made the cache
                qk = torch.matmul(x[:, None], self.head_weights[None, :, :, : self.d_head])
            norms = torch.linalg.vector_norm(qk.float(), dim=-1).clamp_min(1e-12)
            self.inv_norms[:, start : start + n_new] = norms.reciprocal().transpose(1, 2)
        positions = torch.arange(start, start + n_new, device=x.device)
        if n_new == 1:
            # A step touches its own bucket per (batch, head, round) only: no tensor the
            # size of the table (which grows with the context) is made or swept.
            membership = self.counts.gather(-1, buckets)  # this position's index in its bucket
            self.counts.scatter_add_(-1, buckets, torch.ones_like(buckets))
            keep = None
            values = positions.expand_as(buckets)
        else:
            n_total = self.counts.shape[-1]
            real = buckets < n_total  # padded positions sort after every real one
            sorted_buckets = buckets
            buckets = buckets.clamp_max(n_total - 1)  # in range for the gathers below
            added = torch.zeros_like(self.counts).scatter_add_(-1, buckets, real.long())
            # Bucket-major, then position order: a position's rank among the new members of
            # its bucket is its sorted index minus where its bucket starts.
            order = torch.argsort(sorted_buckets * n_new + positions - start, dim=-1)
            buckets, real = buckets.gather(-1, order), real.gather(-1, order)
            first = torch.cumsum(added, -1) - added
            rank = torch.arange(n_new, device=x.device) - first.gather(-1, buckets)
            before = self.counts.gather(-1, buckets)  # members each bucket already had
            membership = before + rank
            keep = membership >= before + added.gather(-1, buckets) - c  # the c most recent
            keep &= real
            values = positions[order]
            self.counts += added
        n_lists = math.prod(self.table.shape[:3])
        base = torch.arange(n_lists, device=x.device).view(*self.table.shape[:3], 1)
        index = (base * self.table.shape[3] + buckets) * c + membership % c
        flat = self.table.view(-1)
        if keep is None:
            flat[index] = values.to(torch.int32)
        else:  # kept entries never share a slot: they are the last c of their bucket
            flat[index[keep]] = values[keep].to(torch.int32)
        self.length = start + n_new

    def step(self, x: torch.Tensor, **extras: torch.Tensor) -> torch.Tensor:
        """The fused step (a fused cache only): one new position with normalised input
        x (B, d_model) float32 attends to its key set K(t) and is stored, in one C call
        (reformer.lsh.cpu.decode_step). Returns the heads' outputs (B, d_model), head h
        at [h·d_head, (h+1)·d_head): a buffer the next step overwrites. ``extras``: the
        step's test hooks (buckets given, keys_out, buckets_out)."""
        if self.out is None:
            raise ValueError("step() is the fused path's; this cache takes the torch step")
        t = self.length
        if t + 1 > self.inputs.shape[1]:
            raise ValueError(f"cache holds {self.inputs.shape[1]} positions; {t + 1} asked")
        if self._step is None:
            from reformer.lsh.cpu.decode_step import FusedDecodeStep

            assert self.head_weights is not None  # set by the layer that made the cache
            self._step = FusedDecodeStep(self, self.head_weights)
        if tuple(x.shape) != tuple(self.out.shape):
            raise ValueError(f"x shape {tuple(x.shape)} must be {tuple(self.out.shape)}")
        x = x.to(torch.float32).contiguous()  # no copy when it is already (autocast: cast)
        self._step(x, t, **extras)
        self.length = t + 1
        return self.out

    def key_positions(self, buckets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The key set K(t) of the next position t = self.length, given its buckets (B, H, R).

        Returns (positions, valid), each (B, H, K) with K <= (R + 1) · bucket_size: distinct
        past positions, most recent first, where ``valid``; the rest are padding (position
        clamped to 0)."""
        t, c = self.length, self.bucket_size
        batch, n_heads = buckets.shape[:2]
        mates = self.table.gather(-2, _expand_to_slots(buckets[..., None], c))  # (B,H,R,1,c)
        mates = mates.reshape(batch, n_heads, -1).to(torch.int64)
        recent = torch.arange(t - c, t, device=buckets.device).expand(batch, n_heads, c)
        if self.first is not None:  # a row's window stops at its first real slot
            recent = recent.masked_fill(recent < self.first[:, None, None], -1)
        candidates = torch.cat([mates, recent], dim=-1)
        candidates, _ = torch.sort(candidates, dim=-1, descending=True)
        repeat = torch.zeros_like(candidates, dtype=torch.bool)
        repeat[..., 1:] = candidates[..., 1:] == candidates[..., :-1]
        # Repeats and empty slots (-1) to the end, so the keys to recompute are a prefix
        # as long as the fullest (batch, head) needs: empty ring slots cost nothing.
        candidates, _ = torch.sort(candidates.masked_fill(repeat, -1), dim=-1, descending=True)
        valid = candidates >= 0
        used = max(1, int(valid.sum(dim=-1).max()))
        return candidates[..., :used].clamp_min(0), valid[..., :used]

    def attend(
        self, qk: torch.Tensor, v: torch.Tensor, buckets: torch.Tensor, weights: torch.Tensor
    ) -> torch.Tensor:
        """One new position: qk, v (B, H, d_head) and buckets (B, H, R) of the query ->
        output (B, H, d_head).

        ``weights`` (H, d_model, 2·d_head): the per-head qk and v projections, to recompute
        the selected keys from the cached inputs. Logits in float32 as in the forward."""
        positions, valid = self.key_positions(buckets)
        batch, capacity, d_model = self.inputs.shape
        # One index_select over (batch · capacity) rows: far cheaper than advanced indexing.
        flat = positions + torch.arange(batch, device=qk.device)[:, None, None] * capacity
        selected = self.inputs.view(-1, d_model).index_select(0, flat.flatten())
        selected = selected.view(*positions.shape, d_model)  # (B, H, K, d_model)
        projected = torch.matmul(selected, weights[None])  # (B, H, K, 2·d_head)
        keys, values = projected.split(self.d_head, dim=-1)
        # Padding slots read whatever the cache holds there (its unwritten rows are
        # torch.empty): zero them, since a weight of 0 times NaN is still NaN.
        values = values.masked_fill(~valid[..., None], 0)
        wide = torch.float64 if qk.dtype == torch.float64 else torch.float32
        unit = F.normalize(keys.to(wide), dim=-1)
        query = qk.to(wide)
        logits = (unit @ query[..., None])[..., 0] * self.d_head**-0.5  # (B, H, K)
        logits = logits.masked_fill(~valid, float("-inf"))
        self_logit = torch.full_like(logits[..., :1], SELF_LOGIT)
        weights_all = torch.cat([logits, self_logit], dim=-1).softmax(dim=-1)
        values_all = torch.cat([values.to(wide), v.to(wide)[:, :, None]], dim=-2)
        out = (weights_all[..., None, :] @ values_all)[..., 0, :]
        return out.to(qk.dtype)


def _expand_to_slots(index: torch.Tensor, slots: int) -> torch.Tensor:
    """Bucket ids (B, H, R, n) -> gather index (B, H, R, n, slots) over the table's buckets."""
    return index[..., None].expand(*index.shape, slots)


def prefill_padding(
    caches: list, tokens: torch.Tensor, padding_mask: torch.Tensor | None
) -> torch.Tensor | None:
    """A model's ``decode`` hands its ``padding_mask`` here: on the prefill (empty caches)
    it sets every cache's first real slot per row and returns them (B,) int64, None when
    no row is padded; on a later call it refuses a mask (new tokens are all real) and
    returns the caches' own."""
    start = caches[0].length
    if padding_mask is None:
        return caches[0].first
    if start != 0:
        raise ValueError(
            f"padding_mask is given on the prefill only (empty caches); got one with {start} "
            "positions cached (later tokens are real in every row)"
        )
    pads = left_padding(padding_mask, tuple(tokens.shape), name="padding_mask")
    # No row padded: the unpadded path, which computes the same.
    first = pads if bool(pads.any()) else None
    for cache in caches:
        cache.set_first(first)
    return first


def position_index(first: torch.Tensor, start: int, end: int) -> torch.Tensor:
    """(B, end - start) int64: the position of slot start .. end-1 in row b, counted from
    its first real slot first[b] (B,); padded slots read position 0, never attended to."""
    slots = torch.arange(start, end, device=first.device)[None, :]
    return (slots - first[:, None]).clamp_min(0)


def real_slots(first: torch.Tensor | None, start: int, end: int) -> torch.Tensor | None:
    """(B, end - start) bool, True where slot start .. end-1 of row b is at or after
    first[b] (B,); None when ``first`` is None (every slot real)."""
    if first is None:
        return None
    return torch.arange(start, end, device=first.device)[None, :] >= first[:, None]


def left_padding(
    attention_mask: object, prompt_shape: tuple[int, ...], *, name: str = "attention_mask"
) -> torch.Tensor:
    """The first real slot (B,) int64 of each row of a left-padded ``attention_mask``
    (B, P) bool, True at real tokens; ValueError naming the argument (``name``) and what
    is wrong otherwise."""
    if not isinstance(attention_mask, torch.Tensor):
        raise ValueError(
            f"{name} must be a (batch, prompt_len) torch.bool tensor, True at real "
            f"tokens, or None; got {type(attention_mask).__name__}"
        )
    if attention_mask.dtype != torch.bool:
        raise ValueError(
            f"{name} dtype {attention_mask.dtype} must be torch.bool (True at real tokens)"
        )
    if tuple(attention_mask.shape) != tuple(prompt_shape):
        raise ValueError(
            f"{name} shape {tuple(attention_mask.shape)} must be the prompt's "
            f"(batch, prompt_len) = {tuple(prompt_shape)}"
        )
    first = (~attention_mask).sum(dim=1)  # (B,) padded slots before the first real one
    length = attention_mask.shape[1]
    empty = (first == length).nonzero().flatten().tolist()
    if empty:
        raise ValueError(
            f"{name} rows {empty} have no real token; allowed: every row with at least one True"
        )
    left = torch.arange(length, device=attention_mask.device)[None, :] >= first[:, None]
    bad = (left != attention_mask).any(dim=1).nonzero().flatten().tolist()
    if bad:
        raise ValueError(
            f"{name} rows {bad} are not left-padded; allowed: False (padding) then "
            "True (real tokens) in each row, as HF's decoder-only generate expects"
        )
    return first


def capacity_needed(prompt_len: int, max_new_tokens: int) -> int:
    """Positions a generation's caches hold: the prompt and every token fed back."""
    return prompt_len + max(0, max_new_tokens - 1)


def check_decode_positions(start: int, n_new: int, max_seq_len: int) -> None:
    """A decoding call that would embed positions past ``max_seq_len`` is refused by name
    (a learned table has no row there; an axial one would embed them silently)."""
    if start + n_new > max_seq_len:
        raise ValueError(
            f"decoding {n_new} position(s) after {start} cached reaches position "
            f"{start + n_new - 1}, past max_seq_len={max_seq_len}; allowed: at most "
            "max_seq_len positions per generation (raise max_seq_len in the config)"
        )


def check_causal(config: Any) -> None:
    """Decoding is causal by construction: a non-causal model's forward could not be
    replayed one token at a time, so its caches would answer another question."""
    if not config.causal:
        raise ValueError(
            "incremental decoding needs a causal model; got causal=False in the config"
        )


def check_lengths(prompt_len: int, max_new_tokens: int, max_seq_len: int) -> None:
    total = prompt_len + max_new_tokens
    if total > max_seq_len:
        raise ValueError(
            f"prompt length {prompt_len} + max_new_tokens {max_new_tokens} = {total} exceeds "
            f"max_seq_len={max_seq_len}; allowed: at most max_seq_len tokens in all"
        )
