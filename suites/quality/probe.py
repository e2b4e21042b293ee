"""What a trained duplication-task model attends to, under each attention (Reformer Table 2).

The paper reports that models trained with LSH attention score 0.8% (chance, 1/127) when
evaluated with full attention. This module measures, for a trained one-layer shared-QK
model, the attention weights each query actually gets under several attentions, from the
same projected qk and v:

- ``shared-full``: exact shared-QK attention, the self logit -1e5 (as the LSH kernels and
  ``exact=True`` compute it: a query sees itself only when it has nothing else);
- ``full-with-self``: the same with the query's own key at its true logit
  q · k̂_self / sqrt(d) = |q| / sqrt(d), the largest any key can have (shared QK: the
  query is parallel to its own key). Plain dot-product attention over shared-QK
  projections computes this; the Reformer's masks it;
- ``lsh-N``: the keys a query sees in any of N rounds' windows (each once), the rotations
  drawn as the quality suite's evaluation draws them;
- ``local``: the keys of its chunk and the one before, in position order.

and runs the rest of the model on that attention's output, so each attention's accuracy
comes from the weights measured (the tests check it against the model's own forward).

Per second-half query t (predicting t + 1, the copy of the token at c = t + 1 - h):
``copy_weight`` (weight on c, mean over queries, of the head that puts most there),
``self_weight`` (weight on t), ``entropy`` (nats, mean over queries and heads),
``copy_seen`` (fraction of (query, head) pairs whose attention can see c at all),
``q_scale`` (|q| / sqrt(d): the logit of a key parallel to the query, mean), and
``copy_margin`` (the copy key's logit minus the largest other visible non-self logit,
mean, in that best head).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from reformer.lsh.hashing import draw_rotations, hash_vectors, resolve_n_buckets
from reformer.lsh.layout import SELF_LOGIT
from reformer.model import ReformerLM
from reformer.seeds import layer_seed
from suites.quality.data import second_half_mask
from suites.rows.names import FULL_WITH_SELF, LOCAL, SHARED_FULL, hash_rounds

PROBE_ATTENTIONS = (SHARED_FULL, FULL_WITH_SELF, "lsh-1", "lsh-4", LOCAL)
METRICS = (
    "accuracy",
    "copy_weight",
    "self_weight",
    "entropy",
    "copy_seen",
    "q_scale",
    "copy_margin",
)


@dataclass
class Projected:
    """One batch through the layer's projections: qk, v (B, H, L, D), and the residual
    input h (B, L, d_model) the attention's output is added to."""

    h: torch.Tensor
    qk: torch.Tensor
    v: torch.Tensor


def project(model: ReformerLM, tokens: torch.Tensor) -> Projected:
    """tokens (B, L) -> the first (only) layer's qk and v, and its residual input."""
    check_probe_model(model)
    h = model.token_embedding(tokens) + model.position_embedding(tokens.shape[1])
    block = model.blocks[0]
    qk, v = block.attention.project(block.attn_norm(h))
    return Projected(h=h, qk=qk, v=v)


def check_probe_model(model: ReformerLM) -> None:
    config = model.config
    if config.n_layers != 1 or config.reversible or config.attention not in ("lsh", LOCAL):
        raise ValueError(
            "the probe reads a one-layer, non-reversible shared-QK model (attention 'lsh' or "
            f"'local'); got n_layers={config.n_layers}, reversible={config.reversible}, "
            f"attention={config.attention!r}"
        )


def visible(spec: str, projected: Projected, model: ReformerLM) -> torch.Tensor:
    """(B, H, L, L) bool: key j is visible to query i under ``spec`` (causal, self
    included). For ``lsh-N`` it draws this call's rotations from the layer's generator,
    as the layer's own forward does."""
    qk = projected.qk
    batch, n_heads, length, d_head = qk.shape
    causal = torch.ones(length, length, dtype=torch.bool, device=qk.device).tril()
    if spec in (SHARED_FULL, FULL_WITH_SELF):
        return causal.expand(batch, n_heads, length, length)
    config = model.config
    chunk = min(config.bucket_size, length)
    if length % chunk:
        raise ValueError(f"seq_len={length} must be a multiple of bucket_size={chunk}")
    if spec == LOCAL:
        of = torch.arange(length, device=qk.device) // chunk
        n_chunks = length // chunk
        seen = (of[None, :] == of[:, None]) | (of[None, :] == (of[:, None] - 1) % n_chunks)
        return (seen & causal).expand(batch, n_heads, length, length)
    rounds = hash_rounds(spec)
    if rounds is None:
        raise ValueError(f"attention {spec!r} is unknown; allowed: {PROBE_ATTENTIONS}")
    layer = model.blocks[0].attention
    factors = resolve_n_buckets(config.n_buckets, length, config.bucket_size)
    rotations = draw_rotations(
        layer.generator, n_heads=n_heads, d_head=d_head, n_hashes=rounds, factors=factors
    )
    buckets = hash_vectors(qk.detach(), rotations, factors)  # (B, H, R, L)
    positions = torch.arange(length, device=qk.device)
    order = torch.argsort(buckets * length + positions, dim=-1)
    rank = torch.empty_like(order).scatter_(-1, order, positions.expand_as(order))
    per_round = length // chunk
    total = rounds * per_round
    # Global chunk of each (round, position): rounds laid end to end, as the kernels do.
    slot = rank // chunk + torch.arange(rounds, device=qk.device).view(1, 1, -1, 1) * per_round
    seen_chunks = torch.cat([slot, (slot - 1) % total], dim=2)  # a query's chunk, and before
    allowed = torch.zeros(batch, n_heads, length, length, dtype=torch.bool, device=qk.device)
    for mine in range(seen_chunks.shape[2]):
        for theirs in range(rounds):
            allowed |= seen_chunks[:, :, mine, :, None] == slot[:, :, theirs, None, :]
    return allowed & causal


def shared_qk_logits(qk: torch.Tensor, self_logit: bool) -> torch.Tensor:
    """q · k̂ / sqrt(d): (B, H, L, L) in float32 at least; with ``self_logit`` the diagonal
    is SELF_LOGIT (the Reformer's rule), else the query's true logit on itself."""
    qk = qk.to(torch.promote_types(qk.dtype, torch.float32))
    logits = qk @ F.normalize(qk, dim=-1).transpose(-1, -2) / math.sqrt(qk.shape[-1])
    if self_logit:
        eye = torch.eye(qk.shape[-2], dtype=torch.bool, device=qk.device)
        logits = logits.masked_fill(eye, SELF_LOGIT)
    return logits


def attention_weights(spec: str, projected: Projected, model: ReformerLM):
    """(weights, logits, visible), each (B, H, L, L): the softmax each query computes
    under ``spec`` over its visible keys, the logits (self as the spec has it), and the
    visible set."""
    seen = visible(spec, projected, model)
    logits = shared_qk_logits(projected.qk, self_logit=spec != FULL_WITH_SELF)
    weights = torch.softmax(logits.masked_fill(~seen, float("-inf")), dim=-1)
    return weights, logits, seen


def finish(model: ReformerLM, projected: Projected, weights: torch.Tensor) -> torch.Tensor:
    """The model's logits (B, L, V) with the layer's attention replaced by ``weights``."""
    block = model.blocks[0]
    layer = block.attention
    out = weights.to(projected.v.dtype) @ projected.v  # (B, H, L, D)
    batch, _, length, _ = out.shape
    h = projected.h + layer.to_out(out.transpose(1, 2).reshape(batch, length, -1))
    h = h + block.g(h)
    return model.head(model.norm(h))


@dataclass
class Sums:
    """Running sums of one attention's metrics over batches."""

    correct: float = 0.0
    queries: float = 0.0
    copy: torch.Tensor | None = None  # per head
    self_weight: float = 0.0
    entropy: float = 0.0
    seen: float = 0.0
    q_scale: float = 0.0
    margin: torch.Tensor | None = None  # per head

    def result(self) -> dict[str, float]:
        assert self.copy is not None and self.margin is not None
        heads = self.copy.numel()
        best = int(self.copy.argmax())
        return {
            "accuracy": self.correct / self.queries,
            "copy_weight": float(self.copy[best]) / self.queries,
            "self_weight": self.self_weight / (self.queries * heads),
            "entropy": self.entropy / (self.queries * heads),
            "copy_seen": self.seen / (self.queries * heads),
            "q_scale": self.q_scale / (self.queries * heads),
            "copy_margin": float(self.margin[best]) / self.queries,
        }


@torch.no_grad()
def probe(
    model: ReformerLM, batches: list[torch.Tensor], specs=PROBE_ATTENTIONS, *, hash_seed: int
) -> dict[str, dict[str, float]]:
    """{spec: metrics} of ``model`` on the duplication ``batches`` (B, L) (module
    docstring). The LSH rotations come from the layer's generator reseeded from
    ``hash_seed`` (as the quality suite's evaluation reseeds it) before each spec."""
    layer = model.blocks[0].attention
    found = {}
    for spec in specs:
        layer.generator.manual_seed(layer_seed(hash_seed, layer.layer_idx))
        sums = Sums()
        for tokens in batches:
            found_batch(model, tokens, spec, sums)
        found[spec] = sums.result()
    return found


def found_batch(model: ReformerLM, tokens: torch.Tensor, spec: str, sums: Sums) -> None:
    """Add one batch's metrics under ``spec`` to ``sums``."""
    projected = project(model, tokens)
    weights, logits, seen = attention_weights(spec, projected, model)
    length = tokens.shape[1]
    half = length // 2
    scored = second_half_mask(length).nonzero().squeeze(-1).to(tokens.device)  # queries t
    copy = scored + 1 - half  # the position holding the token t predicts
    predictions = finish(model, projected, weights)[:, scored].argmax(-1)
    sums.correct += float((predictions == tokens[:, scored + 1]).sum())
    sums.queries += tokens.shape[0] * scored.numel()
    rows = weights[:, :, scored]  # (B, H, Q, L)
    copy_weight = rows.gather(-1, copy.view(1, 1, -1, 1).expand(*rows.shape[:3], 1))[..., 0]
    sums.copy = _add(sums.copy, copy_weight.sum(dim=(0, 2)))
    sums.self_weight += float(rows.gather(-1, _index(scored, rows)).sum())
    sums.entropy += float(-(rows * rows.clamp_min(1e-30).log()).sum())
    visible_rows = seen[:, :, scored]
    sums.seen += float(visible_rows.gather(-1, _index(copy, rows)).sum())
    q_norm = projected.qk[:, :, scored].float().norm(dim=-1) / math.sqrt(projected.qk.shape[-1])
    sums.q_scale += float(q_norm.sum())
    row_logits = logits[:, :, scored]
    copy_logit = row_logits.gather(-1, _index(copy, rows))[..., 0]
    others = visible_rows.clone()
    others.scatter_(-1, _index(copy, rows), False)
    others.scatter_(-1, _index(scored, rows), False)
    best_other = row_logits.masked_fill(~others, float("-inf")).amax(-1)
    margin = (copy_logit - best_other).nan_to_num(0.0, posinf=0.0, neginf=0.0)
    sums.margin = _add(sums.margin, margin.sum(dim=(0, 2)))


def _index(positions: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """(Q,) key positions, one per query row, as a gather index for rows (B, H, Q, L)."""
    return positions.view(1, 1, -1, 1).expand(*rows.shape[:3], 1)


def _add(total: torch.Tensor | None, part: torch.Tensor) -> torch.Tensor:
    return part.double() if total is None else total + part.double()
