"""Slow, obvious twins of the fast paths, used only by tests (trax's use_reference_code).

Everything here is O(L²) or loops in Python on purpose: it is written to be read and
trusted, not to be fast.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from reformer.checks import require_bool
from reformer.lsh.layout import MASK_LOGIT, SELF_LOGIT


def hash_reference(x: torch.Tensor, rotations: torch.Tensor, factors: tuple[int, ...]):
    """Buckets (B, H, R, L) of x (B, H, L, D): argmax([xR; -xR]) per factor, mixed radix."""
    rotated = torch.einsum("bhld,hdrw->bhrlw", x.double(), rotations.double())
    buckets = torch.zeros(rotated.shape[:-1], dtype=torch.long)
    offset, radix = 0, 1
    for factor in factors:
        part = rotated[..., offset : offset + factor // 2]
        buckets += radix * torch.cat([part, -part], dim=-1).argmax(dim=-1)
        offset += factor // 2
        radix *= factor
    return buckets


def shared_qk_logits(qk: torch.Tensor) -> torch.Tensor:
    """q · k̂ / sqrt(d) for qk (..., L, D), with the self logit set to -1e5: (..., L, L)."""
    keys = F.normalize(qk, dim=-1)
    logits = qk @ keys.transpose(-1, -2) / math.sqrt(qk.shape[-1])
    eye = torch.eye(qk.shape[-2], dtype=torch.bool, device=qk.device)
    return logits.masked_fill(eye, SELF_LOGIT)


def exact_shared_qk_attention(qk, v, *, causal: bool, padding_mask=None) -> torch.Tensor:
    """Full softmax attention with shared QK: what LSH attention approximates. NaN or inf
    at a padded position is read as 0 (``reformer.exact``'s rule for padded contents)."""
    require_bool("causal", causal)
    if padding_mask is not None:
        padded = ~padding_mask[:, None, :, None]
        qk = torch.where(padded & ~torch.isfinite(qk), 0.0, qk)
        v = torch.where(padded & ~torch.isfinite(v), 0.0, v)
    logits = shared_qk_logits(qk)
    length = qk.shape[-2]
    if causal:
        future = torch.ones(length, length, dtype=torch.bool, device=qk.device).triu(1)
        logits = logits.masked_fill(future, MASK_LOGIT)
    if padding_mask is not None:
        logits = logits.masked_fill(~padding_mask[:, None, None, :], MASK_LOGIT)
    return torch.softmax(logits, dim=-1) @ v


def window_counts(buckets: torch.Tensor, bucket_size: int) -> torch.Tensor:
    """counts[i, j]: in how many window slots query i sees key j, over all rounds.

    buckets (R, Lp) for one (batch, head). Each round is sorted by (bucket, position), the
    rounds are laid end to end, the result is cut into chunks; the query's slot in chunk C
    sees every slot of chunks C and C-1 (mod the number of chunks; just C if there is one).
    """
    n_rounds, length = buckets.shape
    slots: list[int] = []
    for rnd in range(n_rounds):
        order = buckets[rnd].tolist()
        slots += sorted(range(length), key=lambda i: (order[i], i))
    n_chunks = len(slots) // bucket_size
    counts = torch.zeros(length, length, dtype=torch.long)
    for slot, query in enumerate(slots):
        chunk = slot // bucket_size
        for seen in {chunk, (chunk - 1) % n_chunks}:
            for key in slots[seen * bucket_size : (seen + 1) * bucket_size]:
                counts[query, key] += 1
    return counts


def lsh_attention_reference(
    qk,
    v,
    buckets,
    *,
    bucket_size: int,
    causal: bool,
    padding_mask=None,
    dup_correction: bool = True,
) -> torch.Tensor:
    """LSH attention given buckets (B, H, R, L): one masked softmax per query over the keys
    it saw in any round's chunk window, each counted once (or ``count`` times without the
    duplicate correction). qk (B, H, L, D), v (B, H, L, Dv) -> (B, H, L, Dv).

    Padded positions are read as zeros. A query that may see a key (in one of its windows,
    not padding, not in its future under ``causal``) whose v holds NaN or inf gets NaN in
    its whole output; no other query reads that v (see :func:`_attend`).
    """
    require_bool("causal", causal)
    require_bool("dup_correction", dup_correction)
    batch, n_heads, length, _ = qk.shape
    padded = math.ceil(length / bucket_size) * bucket_size
    pad = padded - length
    sentinel = int(buckets.max()) + 1  # pad positions sort after every real bucket
    buckets = F.pad(buckets, (0, pad), value=sentinel)
    qk, v = F.pad(qk, (0, 0, 0, pad)), F.pad(v, (0, 0, 0, pad))
    valid = torch.arange(padded) < length
    valid = valid.expand(batch, -1).clone()
    if padding_mask is not None:
        valid[:, :length] &= padding_mask
    keep = valid[:, None, :, None]
    qk, v = torch.where(keep, qk, 0.0), torch.where(keep, v, 0.0)
    future = torch.ones(padded, padded, dtype=torch.bool).triu(1)
    outputs = torch.zeros_like(v)
    for b in range(batch):
        for h in range(n_heads):
            counts = window_counts(buckets[b, h], bucket_size)
            logits = shared_qk_logits(qk[b, h])
            if causal:
                logits = logits.masked_fill(future, MASK_LOGIT)
            logits = logits.masked_fill(~valid[b][None, :], MASK_LOGIT)
            if not dup_correction:
                logits = logits + torch.log(counts.clamp_min(1).to(logits.dtype))
            logits = logits.masked_fill(counts == 0, float("-inf"))
            allowed = (counts > 0) & valid[b][None, :]
            if causal:
                allowed &= ~future
            outputs[b, h] = _attend(torch.softmax(logits, dim=-1), v[b, h], allowed)
    return outputs[:, :, :length]


def local_attention_reference(
    qk, v, *, bucket_size: int, causal: bool, padding_mask=None
) -> torch.Tensor:
    """Local attention, from its definition: qk (B, H, L, D), v (B, H, L, Dv) ->
    (B, H, L, Dv). With c = min(bucket_size, L) and n = ceil(L / c) chunks, query i sees
    key j when chunk(j) is chunk(i) or chunk(i) - 1 mod n (the first chunk looks back to
    the last), j is a real position, and j <= i under ``causal``; itself with the self
    logit. Padded positions are read as zeros; a value holding NaN or inf reaches exactly
    the queries that may see it (:func:`_attend`)."""
    require_bool("causal", causal)
    batch, n_heads, length, _ = qk.shape
    chunk = min(bucket_size, length)
    n_chunks = math.ceil(length / chunk)
    of = torch.arange(length) // chunk
    seen = (of[None, :] == of[:, None]) | (of[None, :] == (of[:, None] - 1) % n_chunks)
    allowed = seen.expand(batch, length, length).clone()
    if causal:
        allowed &= torch.ones(length, length, dtype=torch.bool).tril()
    if padding_mask is not None:
        allowed &= padding_mask[:, None, :]
        keep = padding_mask[:, None, :, None]
        qk, v = torch.where(keep, qk, 0.0), torch.where(keep, v, 0.0)
    outputs = torch.zeros_like(v)
    for b in range(batch):
        logits = shared_qk_logits(qk[b]).masked_fill(~allowed[b], float("-inf"))
        for h in range(n_heads):
            outputs[b, h] = _attend(torch.softmax(logits[h], dim=-1), v[b, h], allowed[b])
    return outputs


def _attend(weights: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """weights (L, T) @ v (T, Dv), where only the ``allowed`` (L, T) pairs read v: a query
    allowed a key whose v holds NaN or inf gets NaN in its whole row, and a value no
    allowed pair reads reaches nothing (a plain matmul would add 0 · NaN = NaN)."""
    finite = torch.isfinite(v)
    out = weights @ torch.where(finite, v, 0.0)
    sees_bad = (allowed & ~finite.all(-1)[None, :]).any(-1)
    return out.masked_fill(sees_bad[:, None], float("nan"))


def lsh_decode_keys_reference(buckets, bucket_size: int) -> set[int]:
    """The LSH decoding key set of the last position t, from scratch (reformer.decode).

    buckets (R, t + 1) for one (batch, head): every round's bucket of positions 0..t. The
    key set is the window of the bucket_size positions before t and, per round, the
    bucket_size most recent earlier positions that share t's bucket; each once.
    """
    n_rounds, length = buckets.shape
    t = length - 1
    keys = set(range(max(0, t - bucket_size), t))
    for rnd in range(n_rounds):
        mates = [s for s in range(t) if int(buckets[rnd, s]) == int(buckets[rnd, t])]
        keys |= set(mates[-bucket_size:])
    return keys


def lsh_decode_reference(qk, v, keys: set[int]) -> torch.Tensor:
    """Output (Dv,) of the last position of qk (t + 1, D), v (t + 1, Dv) attending to
    ``keys`` (earlier positions) and, with the self logit, itself: one softmax."""
    t = qk.shape[0] - 1
    seen = sorted(keys) + [t]
    logits = shared_qk_logits(qk.double())[t, seen]
    return torch.softmax(logits, dim=-1) @ v.double()[seen]
