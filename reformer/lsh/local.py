"""Local (chunked look-back) attention: LSH attention with the hashing and the sort taken out.

The sequence is cut into chunks of ``bucket_size`` positions *in position order*; each
chunk attends to itself and to the chunk before it, one round. Everything else is LSH
attention's (Reformer sec. 2): shared QK (keys k̂ = q / ||q||, logits q · k̂ / sqrt(d_head)),
the self logit -1e5 (a position attends to itself only when it has nothing else to see),
padding and causal masks, and the same backends. It is the control for what hashing buys:
the same cost as one LSH round, without the hash or the sort, and without the ability
to reach a key more than one chunk back.

It runs through the LSH backends' own autograd Functions with the identity permutation
and ``n_hashes=1``: no rotation is drawn, no vector hashed, nothing sorted. As in LSH
attention (and trax's and HF transformers' local attention), the first chunk's
"previous chunk" wraps around to the last one: under ``causal`` every key there is in the
query's future and masked; without ``causal`` the first chunk sees the last.
``reformer.reference.local_attention_reference`` is the O(L²) twin.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from reformer.checks import check_call, check_layer_input, check_slice_elements, require_bool
from reformer.decode import KVCache, real_slots
from reformer.exact import exact_attention
from reformer.lsh.attention import LSHSelfAttention, apply_backend, check_inputs, empty_output
from reformer.lsh.dispatch import resolve_backend
from reformer.lsh.layout import SELF_LOGIT, SLICE_ELEMENTS, Layout


def local_attention(
    qk: torch.Tensor,
    v: torch.Tensor,
    *,
    bucket_size: int,
    causal: bool = True,
    padding_mask: torch.Tensor | None = None,
    backend: str = "auto",
    slice_elements: int = SLICE_ELEMENTS,
) -> torch.Tensor:
    """Local attention of qk (B, H, L, D) and v (B, H, L, Dv) -> (B, H, L, Dv).

    Query i in chunk ``i // bucket_size`` sees the keys of its chunk and of the previous
    one (module docstring: the first chunk's wraps around), itself with the self logit.
    ``padding_mask`` (B, L) bool is True at real tokens; other keys get no weight and
    their contents are read as zeros. ``backend`` and ``slice_elements`` as in
    :func:`reformer.lsh.lsh_attention` (a ``bucket_size`` past L runs as one chunk of L).
    """
    require_bool("causal", causal)
    check_inputs(qk, v, 1, bucket_size, padding_mask)
    check_slice_elements(slice_elements)
    if qk.shape[:3].numel() == 0:
        out = empty_output(qk, v, 1, return_buckets=False)
        assert isinstance(out, torch.Tensor)
        return out
    batch, n_heads, seq_len, d_head = qk.shape
    chunk = min(bucket_size, seq_len)
    backend = resolve_backend(backend, qk.device, qk.dtype, chunk, d_head, v.shape[-1])
    if padding_mask is not None:
        real = padding_mask[:, None, :, None]
        qk, v = torch.where(real, qk, 0.0), torch.where(real, v, 0.0)
    padded_len = math.ceil(seq_len / chunk) * chunk
    pad = padded_len - seq_len
    key_valid = padding_mask
    if pad:
        qk, v = nn.functional.pad(qk, (0, 0, 0, pad)), nn.functional.pad(v, (0, 0, 0, pad))
        key_valid = (
            (torch.arange(padded_len, device=qk.device) < seq_len).expand(batch, -1)
            if padding_mask is None
            else nn.functional.pad(padding_mask, (0, pad), value=False)
        )
    # The identity permutation: position order is the chunk order (no hash, no sort).
    in_order = torch.arange(padded_len, device=qk.device).expand(batch, n_heads, 1, -1)
    layout = Layout(
        batch=batch,
        n_heads=n_heads,
        n_hashes=1,
        padded_len=padded_len,
        bucket_size=chunk,
        causal=causal,
        dup_correction=True,
        scale=d_head**-0.5,
        slice_elements=slice_elements,
    )
    valid = None if key_valid is None else key_valid.contiguous()
    out = apply_backend(backend, qk, v, in_order.contiguous(), valid, layout)
    return out[:, :, :seq_len]


def local_window(position: int, bucket_size: int) -> tuple[int, int]:
    """[start, end) of the earlier positions a causal query at ``position`` sees: its own
    chunk and the one before it, up to itself (as in a forward of any length past it)."""
    start = max(0, (position // bucket_size - 1) * bucket_size)
    return start, position


def _step_window(
    slot: int, bucket_size: int, first: torch.Tensor | None
) -> tuple[int, torch.Tensor | None]:
    """The keys a step at ``slot`` reads: slots start .. slot and a mask (B, slot + 1 -
    start) of each row's own :func:`local_window` (None: the window of slot itself, every
    row). With ``first`` (B,) a row's window is that of its position slot - first[b],
    shifted back to slots; each starts at or after slot - 2·bucket_size + 1, so ``start``
    needs no look at ``first`` (no device sync)."""
    if first is None:
        return local_window(slot, bucket_size)[0], None
    start = max(0, slot - 2 * bucket_size + 1)
    position = slot - first  # (B,)
    own = first + ((position // bucket_size - 1) * bucket_size).clamp_min(0)  # (B,)
    return start, torch.arange(start, slot + 1, device=first.device)[None, :] >= own[:, None]


class LocalSelfAttention(LSHSelfAttention):
    """Multi-head local self-attention with shared QK: x (B, L, d_model) -> (B, L, d_model).

    The LSH layer's parameters (so a local-trained model can be run with LSH or exactly,
    and the other way round) and its per-call ``exact=True`` (shared-QK softmax over every
    allowed key). It hashes nothing: a per-call ``n_hashes`` is refused, and its generator
    is never drawn from. Decoding keeps every past qk and v (a key/value cache) and
    attends to the window of :func:`local_window`, so incremental logits equal the
    forward's.
    """

    # Local attention keeps the separate modules (reformer.lsh.layer runs hashed LSH).
    fused_layer = False

    def forward(
        self,
        x: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
        *,
        n_hashes: int | None = None,
        exact: bool = False,
    ) -> torch.Tensor:
        """x (B, L, d_model) -> (B, L, d_model); ``exact`` as in the class docstring."""
        check_layer_input(x, self.config.d_model)
        check_call(x, padding_mask, n_hashes, exact, attention=self.config.attention)
        return self.attend(*self.project(x), padding_mask, exact=exact)

    def attend(
        self,
        qk: torch.Tensor,
        v: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
        *,
        n_hashes: int | None = None,
        exact: bool = False,
    ) -> torch.Tensor:
        """Local attention of projected qk, v (B, H, L, d_head) and the output projection:
        (B, L, d_model); with ``exact`` the LSH layer's exact mode."""
        if n_hashes is not None:
            raise ValueError(
                f"n_hashes={n_hashes} is for attention='lsh' (hash rounds); "
                "attention='local' does not hash: leave n_hashes=None"
            )
        if exact:
            return super().attend(qk, v, padding_mask, exact=True)
        batch, _, seq_len, _ = qk.shape
        cfg = self.config
        out = local_attention(
            qk,
            v,
            bucket_size=cfg.bucket_size,
            causal=cfg.causal,
            padding_mask=padding_mask,
            backend=cfg.backend,
            slice_elements=cfg.slice_elements,
        )
        return self.to_out(out.transpose(1, 2).reshape(batch, seq_len, cfg.d_model))

    def new_cache(  # type: ignore[override]  # no hash rounds to choose
        self, batch: int, capacity: int, like: torch.Tensor, *, n_hashes: int | None = None
    ) -> KVCache:
        """An empty cache of past qk and v for ``capacity`` positions (reformer.decode)."""
        if n_hashes is not None:
            raise ValueError(
                f"n_hashes={n_hashes} is for attention='lsh'; attention='local' does not "
                "hash: leave n_hashes=None"
            )
        return KVCache(batch, self.config.n_heads, self.config.d_head, capacity, like)

    def cached(self, x: torch.Tensor, cache: KVCache) -> torch.Tensor:  # type: ignore[override]
        """Attention of new positions x (B, n, d_model) over the cache and themselves,
        appending them: (B, n, d_model). A prompt (an empty cache) runs the forward's
        local attention; one new position attends to :func:`local_window` and itself.

        A ragged batch (the cache's ``first``, reformer.decode): the prompt's padded slots
        are padding in the forward, and a step's window is its row's own, counted from the
        row's first real slot, so it never holds a padded slot."""
        batch, n_new, _ = x.shape
        cfg = self.config
        qk, v = self.project(x)  # (B, H, n, d_head)
        if cache.length == 0:
            keys, values = cache.append(qk, v)
            out = local_attention(
                qk,
                v,
                bucket_size=cfg.bucket_size,
                causal=True,
                padding_mask=real_slots(cache.first, 0, n_new),
                backend=cfg.backend,
                slice_elements=cfg.slice_elements,
            )
        elif n_new == 1:
            keys, values = cache.append(qk, v)
            start, mask = _step_window(cache.length - 1, cfg.bucket_size, cache.first)
            window = keys[:, :, start:]
            unit = nn.functional.normalize(
                window.to(torch.promote_types(qk.dtype, torch.float32)), dim=-1
            )
            out = exact_attention(
                qk,
                unit,
                values[:, :, start:],
                causal=True,
                padding_mask=mask,
                self_logit=SELF_LOGIT,
            )
        else:
            raise ValueError(
                f"cached local attention takes a prompt (empty cache) or one new position; "
                f"got {n_new} positions after {cache.length}"
            )
        return self.to_out(out.transpose(1, 2).reshape(batch, n_new, cfg.d_model))
