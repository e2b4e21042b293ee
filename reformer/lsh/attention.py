"""LSH self-attention (Reformer sec. 2): the functional API and the module.

What correct means here:

- Shared QK. Queries are the projected vectors q; keys are the same vectors normalised to
  unit length, k̂ = q / ||q||. Logits are ``q · k̂ / sqrt(d_head)`` (HF transformers' scale).
  A position's logit on itself is -1e5, so it attends to itself only when it has nothing
  else. Logits are always formed in float32 (float64 for float64 inputs), so -1e5 is
  representable for fp16 and bf16 inputs too; half-precision logits never exist.
- Each round draws random rotations; bucket = argmax([xR; -xR]) (see hashing.py).
- Positions are sorted by (bucket, position) per round; rounds are laid end to end; chunks
  of ``bucket_size`` attend to themselves and the previous chunk, wrapping around.
- Rounds are combined by log-sum-exp; with ``dup_correction`` a key seen several times
  counts once, so the output is exactly softmax attention over the union of keys seen.
- ``L`` need not be a multiple of ``bucket_size``: the sequence is padded internally with
  zero rows; pad positions get a bucket past the last one (so they sort to the end of
  every round) and are masked as keys. A ``bucket_size`` past L runs as one chunk of L
  per round, which is the same function as any chunk covering the sequence (it still
  sets the default ``n_buckets``, as given).
- Positions a ``padding_mask`` marks as padding are treated the same way (as HF
  transformers' Reformer puts them in one bucket): they never move a real position's
  chunk, and their qk and v are read as zeros. So nothing they hold (NaN, inf, what
  ``torch.empty`` left there) reaches a real output, or the gradient at any position: a
  padded position's gradient is 0, and its own output, that of a zero query, means
  nothing.
- A masked pair (a padded key, a key in the query's future under ``causal``) never
  reads the key's value: NaN or inf in v reaches exactly the queries that may see that
  key (it is in one of their windows and not masked; a query may always see itself),
  and each of those gets NaN in its whole output row, on every backend. Every other
  output, and the gradient (at every position) of a loss of those other outputs, is
  what the same input with that value finite gives. NaN or inf in qk at a real
  position is not guarded: it enters the hash, and the logits of the queries whose
  windows hold it (on the torch path also of those for which it is masked, as a later
  key under ``causal``), whose rows may become NaN.

Causality: with ``causal=True`` no query ever gets weight from a later key, so changing v
at positions >= t (to anything, NaN or inf too) never changes outputs before t, and the
gradient of outputs before t with respect to qk or v at positions >= t is exactly zero.
With several chunks, a later position's *hash* can still move chunk boundaries and so
change which earlier keys a query sees (the bucket layout is a function of the whole
sequence). That is inherent to sorted chunking, carries no value from the future, and
matters for generation: decoding token by token does not reproduce the logits of a
full-sequence forward unless bucket_size >= L.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from reformer.checks import (
    check_call,
    check_layer_input,
    check_n_hashes,
    check_padding_mask,
    check_slice_elements,
    require_bool,
)
from reformer.decode import LSHCache, fused_decode_enabled, real_slots
from reformer.exact import exact_attention, finite_padding
from reformer.lsh.cpu.decode_step import fused_step_limits
from reformer.lsh.dispatch import resolve_backend
from reformer.lsh.hashing import (
    draw_rotations,
    hash_vectors,
    resolve_n_buckets,
    rotation_width,
    total_buckets,
)
from reformer.lsh.layout import SELF_LOGIT, SLICE_ELEMENTS, Layout
from reformer.lsh.torch_path import LSHAttentionFunction
from reformer.seeds import layer_seed

if TYPE_CHECKING:  # reformer.config imports this package (backend names, slice default)
    from reformer.config import ReformerConfig

_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def lsh_attention(
    qk: torch.Tensor,
    v: torch.Tensor,
    *,
    n_hashes: int,
    bucket_size: int,
    n_buckets: int | tuple[int, ...] | None = None,
    causal: bool = True,
    seed: int | None = None,
    rotations: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    padding_mask: torch.Tensor | None = None,
    dup_correction: bool = True,
    return_buckets: bool = False,
    backend: str = "auto",
    slice_elements: int = SLICE_ELEMENTS,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """LSH attention of qk (B, H, L, D) and v (B, H, L, Dv) -> (B, H, L, Dv).

    Give exactly one source of randomness: ``seed`` (a fresh generator), ``generator`` (the
    caller's, advanced), or explicit ``rotations`` (H, D, n_hashes, n_buckets // 2).
    ``padding_mask`` (B, L) bool is True at real tokens; other keys get zero weight, and
    they sort after every real position in each round (see the module docstring).
    ``n_buckets`` defaults to 2·L/bucket_size (factorised above 128, see hashing.py).
    With ``return_buckets`` also returns the buckets (B, H, n_hashes, L) int64 (padded
    positions: the bucket past the last, n_buckets).
    ``backend`` picks the implementation: "torch", "triton", "cpu", or "auto", which picks
    one of those three per call (``reformer.lsh.dispatch.resolve_backend``). The three
    compute the same function up to floating-point rounding; the tests check each against
    the O(L²) twin ``reformer.reference.lsh_attention_reference``. (The attention LSH
    approximates, every allowed key and no hashing, is ``LSHSelfAttention``'s
    ``exact=True``, not a backend.)
    ``slice_elements`` bounds the torch path's work per batched op, in logits (batch rows ×
    heads × chunks × c × 2c; about 10 bytes each are live in backward): larger slices mean
    fewer, larger ops and more transient memory (like trax's ``n_parallel_heads``). It
    never changes the result.

    Empty input (B, H or L = 0) gives an empty output of the same shape, as torch's own
    attention does. Padded positions are read as zeros; NaN or inf in v reaches only the
    queries that may see that key (their whole output row becomes NaN), never through a
    masked pair, in the output or the gradient (module docstring). A ``bucket_size`` past
    L costs what bucket_size=L does: the same function.
    """
    for name, switch in (
        ("causal", causal),
        ("dup_correction", dup_correction),
        ("return_buckets", return_buckets),
    ):
        require_bool(name, switch)
    check_inputs(qk, v, n_hashes, bucket_size, padding_mask)
    check_slice_elements(slice_elements)
    if qk.shape[:3].numel() == 0:
        return empty_output(qk, v, n_hashes, return_buckets)
    _, n_heads, seq_len, d_head = qk.shape
    # A chunk as long as the sequence already holds every position, so a larger
    # bucket_size computes the same function (one chunk per round, the rest padding): it
    # is run as that chunk, not padded out to bucket_size positions. It still sets the
    # default number of buckets (the hash), as given.
    chunk = min(bucket_size, seq_len)
    backend = resolve_backend(backend, qk.device, qk.dtype, chunk, qk.shape[-1], v.shape[-1])
    if rotations is not None and n_buckets is None:
        n_buckets = 2 * rotations.shape[-1]
    factors = resolve_n_buckets(n_buckets, seq_len, bucket_size)
    rotations = _rotations(rotations, seed, generator, n_heads, d_head, n_hashes, factors)
    if rotations.shape[2] != n_hashes:
        raise ValueError(f"rotations has {rotations.shape[2]} rounds but n_hashes={n_hashes}")
    qk_in, v_in, sort_idx, valid, layout, buckets = sorted_layout(
        qk,
        v,
        rotations,
        factors,
        chunk=chunk,
        causal=causal,
        padding_mask=padding_mask,
        dup_correction=dup_correction,
        slice_elements=slice_elements,
    )
    out = apply_backend(backend, qk_in, v_in, sort_idx, valid, layout)[:, :, :seq_len]
    return (out, buckets) if return_buckets else out


def read_as_zeros(
    qk: torch.Tensor, v: torch.Tensor, padding_mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """qk (B, H, L, D) and v (B, H, L, Dv) with the positions ``padding_mask`` (B, L)
    marks as padding set to zero (unchanged if None): nothing a padded position holds
    (NaN, inf, torch.empty's leftovers) reaches a real output or gradient, not even
    through a padded query's own row (module docstring)."""
    if padding_mask is None:
        return qk, v
    real = padding_mask[:, None, :, None]
    return torch.where(real, qk, 0.0), torch.where(real, v, 0.0)


def pad_to_chunks(
    qk: torch.Tensor, v: torch.Tensor, padded_len: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """qk, v (B, H, L, D) padded with zero rows to (B, H, padded_len, D); the same
    tensors when L is already ``padded_len``."""
    pad = padded_len - qk.shape[2]
    if not pad:
        return qk, v
    return nn.functional.pad(qk, (0, 0, 0, pad)), nn.functional.pad(v, (0, 0, 0, pad))


def key_validity(
    padding_mask: torch.Tensor | None, batch: int, seq_len: int, padded_len: int, device
) -> torch.Tensor | None:
    """Which of the padded_len positions are real keys, (B, Lp) bool contiguous, or None
    when every one is (no padding mask, L a multiple of the chunk)."""
    if padded_len == seq_len:
        return None if padding_mask is None else padding_mask.contiguous()
    if padding_mask is None:
        in_sequence = torch.arange(padded_len, device=device) < seq_len
        return in_sequence.expand(batch, -1).contiguous()
    return nn.functional.pad(padding_mask, (0, padded_len - seq_len), value=False).contiguous()


def sort_order(
    qk: torch.Tensor,
    rotations: torch.Tensor,
    factors: tuple[int, ...],
    padding_mask: torch.Tensor | None,
    padded_len: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Buckets (B, H, R, L) int64 of qk (B, H, L, D) (already read as zeros at padding)
    under ``rotations`` (H, D, R, W), and the order of each round's padded_len positions
    sorted by (bucket, position), (B, H, R, padded_len) int64 (Reformer sec. 2)."""
    seq_len = qk.shape[2]
    buckets = hash_vectors(qk.detach(), rotations, factors)
    if padding_mask is not None:
        # Padding sorts last, as the internal length padding does (module docstring).
        buckets = buckets.masked_fill(~padding_mask[:, None, None, :], total_buckets(factors))
    sort_buckets = buckets
    if padded_len > seq_len:
        sort_buckets = nn.functional.pad(
            buckets, (0, padded_len - seq_len), value=total_buckets(factors)
        )
    positions = torch.arange(padded_len, device=qk.device)
    return buckets, torch.argsort(sort_buckets * padded_len + positions, dim=-1)


def sorted_layout(
    qk: torch.Tensor,
    v: torch.Tensor,
    rotations: torch.Tensor,
    factors: tuple[int, ...],
    *,
    chunk: int,
    causal: bool,
    padding_mask: torch.Tensor | None,
    dup_correction: bool,
    slice_elements: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None, Layout, torch.Tensor]:
    """What every backend takes for one call (Reformer sec. 2), from checked qk (B, H, L,
    D), v (B, H, L, Dv) and the call's rotations (H, D, R, W): padded qk and v (B, H, Lp,
    ·), read as zeros at padding, the sort order (B, H, R, Lp) int64, the real keys (B,
    Lp) bool or None, the :class:`Layout`, and the buckets (B, H, R, L) int64."""
    batch, n_heads, seq_len, d_head = qk.shape
    qk, v = read_as_zeros(qk, v, padding_mask)
    padded_len = math.ceil(seq_len / chunk) * chunk
    buckets, sort_idx = sort_order(qk, rotations, factors, padding_mask, padded_len)
    qk_in, v_in = pad_to_chunks(qk, v, padded_len)
    layout = Layout(
        batch=batch,
        n_heads=n_heads,
        n_hashes=rotations.shape[2],
        padded_len=padded_len,
        bucket_size=chunk,
        causal=causal,
        dup_correction=dup_correction,
        scale=d_head**-0.5,
        slice_elements=slice_elements,
    )
    valid = key_validity(padding_mask, batch, seq_len, padded_len, qk.device)
    return qk_in, v_in, sort_idx, valid, layout, buckets


def apply_backend(
    backend: str,
    qk: torch.Tensor,
    v: torch.Tensor,
    sort_idx: torch.Tensor,
    key_valid: torch.Tensor | None,
    layout: Layout,
) -> torch.Tensor:
    """The chunked attention every backend computes (reformer.lsh.layout), run by
    ``backend`` ("torch", "triton" or "cpu", as resolved): padded qk (B, H, Lp, D), v
    (B, H, Lp, Dv), ``sort_idx`` (B, H, R, Lp) int64, ``key_valid`` (B, Lp) bool or None
    -> (B, H, Lp, Dv). Shared by LSH attention and local attention (the identity order)."""
    function: type[torch.autograd.Function] = LSHAttentionFunction
    if backend == "triton":
        from reformer.lsh.triton.function import TritonLSHFunction  # imports triton: when used

        function = TritonLSHFunction
    elif backend == "cpu":
        from reformer.lsh.cpu.function import CpuLSHFunction

        function = CpuLSHFunction
    return function.apply(qk, v, sort_idx, key_valid, layout)


def empty_output(
    qk: torch.Tensor, v: torch.Tensor, n_hashes: int, return_buckets: bool
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """The (B, H, L, Dv) output of an input with no positions (and, with
    ``return_buckets``, empty buckets); tied to both inputs so a
    backward gives each its (empty) gradient."""
    out = v.clone() + qk.sum() * 0
    if not return_buckets:
        return out
    batch, n_heads, seq_len, _ = qk.shape
    buckets = torch.zeros(batch, n_heads, n_hashes, seq_len, dtype=torch.long, device=qk.device)
    return out, buckets


def _rotations(rotations, seed, generator, n_heads, d_head, n_hashes, factors):
    given = sum(x is not None for x in (rotations, seed, generator))
    if given != 1:
        raise ValueError(
            "give exactly one of seed=, generator= or rotations= (got "
            f"{given}); they choose the random hash rotations"
        )
    if rotations is not None:
        expected = (n_heads, d_head, n_hashes, rotation_width(factors))
        if tuple(rotations.shape) != expected:
            raise ValueError(
                f"rotations shape {tuple(rotations.shape)} must be "
                f"(n_heads, d_head, n_hashes, n_buckets // 2) = {expected}"
            )
        return rotations
    if seed is not None:
        generator = torch.Generator().manual_seed(seed)
    return draw_rotations(
        generator, n_heads=n_heads, d_head=d_head, n_hashes=n_hashes, factors=factors
    )


def check_inputs(qk, v, n_hashes, bucket_size, padding_mask) -> None:
    if not isinstance(n_hashes, int) or n_hashes < 1:
        raise ValueError(f"n_hashes={n_hashes!r} must be an int >= 1")
    if not isinstance(bucket_size, int) or bucket_size < 1:
        raise ValueError(f"bucket_size={bucket_size!r} must be an int >= 1")
    if qk.dim() != 4 or v.dim() != 4:
        raise ValueError(
            f"qk and v must be (B, H, L, D); got qk {tuple(qk.shape)}, v {tuple(v.shape)}"
        )
    if qk.shape[:3] != v.shape[:3]:
        raise ValueError(f"qk {tuple(qk.shape)} and v {tuple(v.shape)} must agree in (B, H, L)")
    if qk.shape[-1] < 1 or v.shape[-1] < 1:
        raise ValueError(
            f"qk {tuple(qk.shape)} and v {tuple(v.shape)} need a head width D >= 1 (hashing "
            "normalises qk along D)"
        )
    if qk.dtype not in _DTYPES or v.dtype != qk.dtype:
        raise ValueError(
            f"qk dtype {qk.dtype} and v dtype {v.dtype} must be equal and one of {_DTYPES}"
        )
    check_padding_mask(padding_mask, (qk.shape[0], qk.shape[2]))


class LSHSelfAttention(nn.Module):
    """Multi-head LSH self-attention with shared QK (Reformer sec. 2).

    x (B, L, d_model) -> (B, L, d_model). Rotations are redrawn on every call from the
    layer's own ``generator`` (seeded from config.seed and layer_idx, never the global
    RNG). To replay a call exactly (reversible recomputation), save
    ``generator.get_state()`` before it and ``generator.set_state(...)`` before replaying.

    Per call (as HF transformers' ``num_hashes``), ``n_hashes`` overrides config.n_hashes,
    and ``exact=True`` computes the attention LSH approximates instead: shared-QK softmax
    over every allowed key (q · k̂ / sqrt(d_head), self logit -1e5, causal as configured),
    drawing no rotations. The config is never changed, so one set of weights can be run
    with any number of rounds, or exactly, call by call.
    """

    # Run the whole layer as one Function with a head-by-head backward where the fused C
    # kernel runs (:meth:`fuses`); False: always the separate modules.
    fused_layer = True
    # ...and only from this many positions per call (B·L). The memory-frugal Function pays
    # for its savings with time: it recomputes each head's attention forward in backward
    # and runs the projections and hashing head by head, so a layer is slower than the
    # separate modules at every length, most at short ones (docs/lsh.md). It is kept for
    # the lengths where a (B·L, d_model) buffer is large (128 MiB at d_model 256) and
    # memory is what limits a run.
    fused_layer_min_tokens = 2**17

    def __init__(self, config: ReformerConfig, layer_idx: int = 0) -> None:
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        d_model = config.d_model
        self.to_qk = nn.Linear(d_model, d_model, bias=False)
        self.to_v = nn.Linear(d_model, d_model, bias=False)
        self.to_out = nn.Linear(d_model, d_model)
        self.generator = torch.Generator().manual_seed(layer_seed(config.seed, layer_idx))

    def forward(
        self,
        x: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
        *,
        n_hashes: int | None = None,
        exact: bool = False,
    ) -> torch.Tensor:
        """x (B, L, d_model) -> (B, L, d_model); the per-call arguments as in the class
        docstring, ``padding_mask`` (B, L) bool True at real tokens."""
        check_layer_input(x, self.config.d_model)
        check_call(x, padding_mask, n_hashes, exact, attention=self.config.attention)
        if self.fuses(x, exact):
            return self.fused(x, padding_mask, n_hashes=n_hashes)
        return self.attend(*self.project(x), padding_mask, n_hashes=n_hashes, exact=exact)

    def fuses(self, x: torch.Tensor, exact: bool = False) -> bool:
        """Whether a call on x (B, L, d_model) runs the whole layer as one Function with a
        head-by-head backward (:mod:`reformer.lsh.layer`): where the fused C kernel runs
        (float32 CPU tensors, backend "cpu", or "auto" where the kernel builds), not under
        autocast (whose projections would be half precision), not ``exact``, L and B >= 1,
        B·L at least ``fused_layer_min_tokens``, and ``fused_layer`` (True; False selects
        the separate modules, the twin the tests compare with). Elsewhere (torch path,
        Triton, CUDA) the layer is unchanged."""
        cfg = self.config
        if not self.fused_layer or exact or x.shape[:2].numel() == 0:
            return False
        if x.shape[:2].numel() < self.fused_layer_min_tokens:
            return False
        if cfg.backend not in ("auto", "cpu") or x.device.type != "cpu":
            return False
        if x.dtype != torch.float32 or torch.is_autocast_enabled("cpu"):
            return False
        chunk = min(cfg.bucket_size, x.shape[1])
        return resolve_backend(cfg.backend, x.device, x.dtype, chunk, cfg.d_head) == "cpu"

    def fused(
        self,
        x: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
        *,
        n_hashes: int | None = None,
        backend: str = "cpu",
    ) -> torch.Tensor:
        """The layer of x (B, L, d_model) -> (B, L, d_model) through
        :func:`reformer.lsh.layer.lsh_layer`: the same function as the separate modules
        (this call's rotations drawn from the layer's generator the same way), whose
        backward keeps per-head buffers only. ``backend`` runs each head's attention
        ("cpu" in the model; the tests also run "torch" in float64)."""
        from reformer.lsh.layer import LayerSpec, lsh_layer  # imports this module

        cfg = self.config
        seq_len = x.shape[1]
        rounds = cfg.n_hashes if n_hashes is None else n_hashes
        factors = resolve_n_buckets(cfg.n_buckets, seq_len, cfg.bucket_size)
        rotations = draw_rotations(
            self.generator, n_heads=cfg.n_heads, d_head=cfg.d_head, n_hashes=rounds, factors=factors
        )
        spec = LayerSpec(
            n_heads=cfg.n_heads,
            n_hashes=rounds,
            bucket_size=min(cfg.bucket_size, seq_len),
            factors=factors,
            causal=cfg.causal,
            dup_correction=cfg.dup_correction,
            backend=backend,
            slice_elements=cfg.slice_elements,
        )
        return lsh_layer(
            x,
            self.to_qk.weight,
            self.to_v.weight,
            self.to_out.weight,
            self.to_out.bias,
            rotations,
            spec,
            padding_mask,
        )

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, L, d_model) -> shared qk and v, each (B, H, L, d_head) (views of (B, L, H,
        d_head) memory, which the attention reads in place)."""
        check_layer_input(x, self.config.d_model)
        batch, seq_len, _ = x.shape
        cfg = self.config
        qk = self.to_qk(x).view(batch, seq_len, cfg.n_heads, cfg.d_head).transpose(1, 2)
        v = self.to_v(x).view(batch, seq_len, cfg.n_heads, cfg.d_head).transpose(1, 2)
        return qk, v

    def attend(
        self,
        qk: torch.Tensor,
        v: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
        *,
        n_hashes: int | None = None,
        exact: bool = False,
    ) -> torch.Tensor:
        """LSH attention of projected qk, v (B, H, L, d_head) and the output projection:
        (B, L, d_model). Draws this call's rotations (``n_hashes`` rounds, config.n_hashes
        if None) from the layer's generator; with ``exact`` draws none and attends to every
        allowed key (:func:`reformer.exact.exact_attention`, shared-QK convention)."""
        batch, _, seq_len, _ = qk.shape
        cfg = self.config
        if exact:
            if padding_mask is not None:  # before the keys are formed from it
                qk = finite_padding(qk, padding_mask)
            keys = F.normalize(qk.to(torch.promote_types(qk.dtype, torch.float32)), dim=-1)
            dense = exact_attention(
                qk, keys, v, causal=cfg.causal, padding_mask=padding_mask, self_logit=SELF_LOGIT
            )
            return self.to_out(dense.transpose(1, 2).reshape(batch, seq_len, cfg.d_model))
        rounds = cfg.n_hashes if n_hashes is None else n_hashes
        factors = resolve_n_buckets(cfg.n_buckets, seq_len, cfg.bucket_size)
        rotations = draw_rotations(
            self.generator,
            n_heads=cfg.n_heads,
            d_head=cfg.d_head,
            n_hashes=rounds,
            factors=factors,
        )
        out = lsh_attention(
            qk,
            v,
            n_hashes=rounds,
            bucket_size=cfg.bucket_size,
            n_buckets=factors if len(factors) > 1 else factors[0],
            causal=cfg.causal,
            rotations=rotations,
            padding_mask=padding_mask,
            dup_correction=cfg.dup_correction,
            backend=cfg.backend,
            slice_elements=cfg.slice_elements,
        )
        assert isinstance(out, torch.Tensor)  # no return_buckets: one tensor
        return self.to_out(out.transpose(1, 2).reshape(batch, seq_len, cfg.d_model))

    def new_cache(
        self, batch: int, capacity: int, like: torch.Tensor, *, n_hashes: int | None = None
    ) -> LSHCache:
        """An empty decoding cache for ``capacity`` positions, with this generation's
        rotations (``n_hashes`` rounds, config.n_hashes if None) drawn now from the layer's
        generator (reformer.decode: the rule)."""
        cfg = self.config
        check_n_hashes(n_hashes, cfg.attention)
        factors = resolve_n_buckets(cfg.n_buckets, capacity, cfg.bucket_size)
        cache = LSHCache(
            batch=batch,
            n_heads=cfg.n_heads,
            d_head=cfg.d_head,
            n_hashes=cfg.n_hashes if n_hashes is None else n_hashes,
            bucket_size=cfg.bucket_size,
            n_buckets=cfg.n_buckets,
            capacity=capacity,
            generator=self.generator,
            like=like,
            fused=_fused_step(cfg, like, factors),
        )
        cache.head_weights = self._head_weights().detach()
        return cache

    def cached(self, x: torch.Tensor, cache: LSHCache) -> torch.Tensor:
        """Attention of new positions x (B, n, d_model) over the cache and themselves,
        appending them: (B, n, d_model). The prompt (an empty cache) runs the forward's LSH
        attention under the cache's rotations, a ragged batch's padded slots (the cache's
        ``first``) masked; one new position runs the decoding rule."""
        batch, n_new, _ = x.shape
        cfg = self.config
        qk, v = self.project(x)  # (B, H, n, d_head)
        if cache.length == 0:
            out, buckets = lsh_attention(
                qk,
                v,
                n_hashes=cache.n_hashes,
                bucket_size=cfg.bucket_size,
                n_buckets=cache.n_buckets,
                causal=True,
                rotations=cache.rotations,
                # A ragged batch's padded slots: never keys, and past the last bucket,
                # so the cache lists them nowhere.
                padding_mask=real_slots(cache.first, 0, n_new),
                dup_correction=cfg.dup_correction,
                return_buckets=True,
                backend=cfg.backend,
                slice_elements=cfg.slice_elements,
            )
        elif n_new == 1:
            buckets = cache.buckets(qk)
            assert cache.head_weights is not None  # set by new_cache
            out = cache.attend(qk[:, :, 0], v[:, :, 0], buckets[..., 0], cache.head_weights)
            out = out[:, :, None]
        else:
            raise ValueError(
                f"cached LSH attention takes a prompt (empty cache) or one new position; got "
                f"{n_new} positions after {cache.length}"
            )
        cache.store(x, buckets, qk)
        return self.to_out(out.transpose(1, 2).reshape(batch, n_new, cfg.d_model))

    def step(self, x: torch.Tensor, cache: LSHCache) -> torch.Tensor:
        """One new position x (B, d_model) -> (B, d_model) over the cache, appended to it:
        the fused C step where the cache has one (one call for the projections, hash,
        table, key set and attention of every head), else :meth:`cached`."""
        if getattr(cache, "fused", False) and cache.length > 0:
            return self.to_out(cache.step(x))
        return self.cached(x[:, None], cache)[:, 0]

    def _head_weights(self) -> torch.Tensor:
        """The qk and v projections per head, (H, d_model, 2·d_head): x @ W[h] = [qk_h, v_h]."""
        cfg = self.config
        per_head = [
            w.view(cfg.n_heads, cfg.d_head, cfg.d_model).transpose(1, 2)
            for w in (self.to_qk.weight, self.to_v.weight)
        ]
        return torch.cat(per_head, dim=-1)


def _fused_step(config: ReformerConfig, like: torch.Tensor, factors: tuple[int, ...]) -> bool:
    """Whether a decoding cache takes the fused CPU step: where the forward's backend
    resolves to the fused CPU kernel (float32 CPU tensors and a working compiler; "auto"
    falls back to the torch step, with the forward's warning, as the forward does), and
    not turned off (reformer.decode.fused_decode)."""
    if not fused_decode_enabled() or fused_step_limits(factors) is not None:
        return False
    if like.device.type != "cpu" or like.dtype != torch.float32:
        return False  # the kernel's only inputs (a "cpu" backend is refused by the prefill)
    backend = resolve_backend(
        config.backend, like.device, like.dtype, config.bucket_size, config.d_head
    )
    return backend == "cpu"
