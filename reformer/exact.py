"""Exact (dense) softmax attention: the one O(L²) primitive every exact path shares.

trax's efficient_attention has one ``attend()`` that serves full, chunked and LSH
attention. Here the dense case is one function, used by

- the "full" and "sdpa" layers (reformer.attention), forward and decoding steps;
- the Transformer baseline's cached attention (baselines.transformer);
- the LSH layer's exact mode (``exact=True``): shared-QK softmax over every allowed key,
  the attention LSH approximates (Reformer sec. 2; Table 2's "Full" column).

Two logit conventions:

- separate Q and K (``self_logit=None``): ``q · k / sqrt(d)``; masked pairs get the
  dtype's lowest value, and a query may always attend to itself, so no row is empty;
- shared QK (``self_logit`` a number, normally ``SELF_LOGIT`` = -1e5): keys are the
  caller's unit-length k̂, logits ``q · k̂ / sqrt(d)`` in float32 (float64 for float64
  inputs), the self logit replaced by ``self_logit`` and masked pairs set to
  ``MASK_LOGIT``, exactly as the LSH kernels do (reformer.lsh.layout).

The slow twin of the shared-QK convention is reformer.reference.exact_shared_qk_attention.

Non-finite input: NaN and inf at padded positions are read as 0 (:func:`finite_padding`),
so they reach no real output and no gradient at a real position. Finite padded contents
are kept (a padded query's own row uses them), and NaN or inf in the value of a real key
in a query's future still reaches that query: a masked pair's weight is exactly 0, but
0 · NaN is NaN in the P·V matmul, as in torch's scaled_dot_product_attention. (LSH
attention never lets a masked pair read a value: reformer/lsh/attention.py.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from reformer.lsh.layout import MASK_LOGIT


def exact_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal: bool = True,
    padding_mask: torch.Tensor | None = None,
    self_logit: float | None = None,
    sdpa: bool = False,
) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v: q (B, H, n, D), k (B, H, T, D), v (B, H, T, Dv) ->
    (B, H, n, Dv).

    The n queries are the *last* n of the T key positions (n = T for a whole sequence,
    n = 1 for a decoding step): with ``causal`` query i sees keys up to its own position.
    ``padding_mask`` (B, T) bool is True at real keys. ``self_logit`` selects the shared-QK
    convention (module docstring); ``sdpa`` runs the separate-QK convention through
    ``torch.nn.functional.scaled_dot_product_attention`` (fused kernels).
    """
    n_new, total = q.shape[2], k.shape[2]
    if padding_mask is not None:
        q, k, v = (finite_padding(x, padding_mask) for x in (q, k, v))
    if self_logit is not None:
        return _shared_qk(q, k, v, causal, padding_mask, self_logit)
    allowed = _allowed(n_new, total, causal, padding_mask, q.device)
    if sdpa:
        if allowed is None:
            return F.scaled_dot_product_attention(q, k, v)
        if padding_mask is None and n_new == total:
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
    scores = torch.matmul(q, k.transpose(-1, -2)) * q.shape[-1] ** -0.5  # (B, H, n, T)
    if allowed is not None:
        scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
    return torch.matmul(torch.softmax(scores, dim=-1), v)


def finite_padding(x: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
    """x (B, H, n, D) with NaN and inf at padded positions read as 0; its n positions are
    the last n of the mask's (B, T). A masked pair's weight is exactly 0, but 0 · NaN is
    NaN (in the forward's P·V, in backward's dO·Vᵀ and dS·K), and a padded query's row of
    NaN logits would pass NaN back to every key it sees. Finite contents are kept, so a
    finite input gives the same result bit for bit; the gradient at a replaced entry is 0."""
    padded = ~padding_mask[:, None, -x.shape[2] :, None]  # (B, 1, n, 1)
    return torch.where(padded & ~torch.isfinite(x), 0.0, x)


def _shared_qk(q, k, v, causal, padding_mask, self_logit: float) -> torch.Tensor:
    """The shared-QK convention: k holds unit keys k̂; logits formed in float32 or wider."""
    n_new, total = q.shape[2], k.shape[2]
    if padding_mask is None and q.dtype in _FUSED_DTYPES and q.dtype == k.dtype == v.dtype:
        return _shared_qk_fused(q, k, v, causal, self_logit)
    wide = torch.promote_types(q.dtype, torch.float32)
    logits = torch.matmul(q.to(wide), k.to(wide).transpose(-1, -2)) * q.shape[-1] ** -0.5
    query_pos = torch.arange(total - n_new, total, device=q.device)[:, None]  # (n, 1)
    key_pos = torch.arange(total, device=q.device)[None, :]  # (1, T)
    logits = logits.masked_fill(key_pos == query_pos, self_logit)
    masked = key_pos > query_pos if causal else None
    if padding_mask is not None:
        invalid = ~padding_mask[:, None, None, :]  # (B, 1, 1, T)
        masked = invalid if masked is None else masked | invalid
    if masked is not None:
        logits = logits.masked_fill(masked, MASK_LOGIT)
    return torch.matmul(torch.softmax(logits, dim=-1).to(v.dtype), v)


# Logits already float32 or wider: the fused kernel keeps the convention's precision.
_FUSED_DTYPES = (torch.float32, torch.float64)


def _shared_qk_fused(q, k, v, causal: bool, self_logit: float) -> torch.Tensor:
    """:func:`_shared_qk` without padding through ``scaled_dot_product_attention`` (about 3x
    faster forward and backward at L = 512 on a CPU, as it never materialises the
    probabilities for backward): the self logit and the causal mask become an additive
    (n, T) mask. Adding ``self_logit`` (-1e5) to q·k̂/sqrt(d) (at most sqrt(d) in size)
    instead of replacing it changes nothing: such a weight underflows to exactly 0 beside
    any allowed key, and a row whose only key is itself gets weight 1 either way; the same
    holds for MASK_LOGIT. So outputs agree with the materialised path to rounding, and the
    gradients too (a weight of 0 or a lone weight of 1 passes no gradient to its logit).
    """
    n_new, total = q.shape[2], k.shape[2]
    query_pos = torch.arange(total - n_new, total, device=q.device)[:, None]  # (n, 1)
    key_pos = torch.arange(total, device=q.device)[None, :]  # (1, T)
    bias = torch.zeros(n_new, total, dtype=q.dtype, device=q.device)
    bias.masked_fill_(key_pos == query_pos, self_logit)
    if causal:
        bias.masked_fill_(key_pos > query_pos, MASK_LOGIT)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)


def _allowed(n_new, total, causal, padding_mask, device) -> torch.Tensor | None:
    """Bool mask broadcastable to (B, H, n, T): True where a query may attend to a key.

    A query may always attend to itself, so no row is empty (no NaN from an all-masked
    softmax row at a padded query).
    """
    causal = causal and n_new > 1  # the last position sees every key: no mask needed
    if not causal and padding_mask is None:
        return None
    query_pos = torch.arange(total - n_new, total, device=device)[:, None]  # (n, 1)
    key_pos = torch.arange(total, device=device)[None, :]  # (1, T)
    allowed = key_pos <= query_pos if causal else None  # (n, T)
    if padding_mask is not None:
        keys = padding_mask[:, None, None, :]  # (B, 1, 1, T)
        allowed = keys if allowed is None else allowed & keys
        allowed = allowed | (key_pos == query_pos)
    return allowed
