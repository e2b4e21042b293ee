"""Batched and ragged generation: every row of a batch, padded or not, against the same
row decoded alone (the slow obvious twin), for the LSH cache and the key/value caches."""

from __future__ import annotations

import pytest
import torch

from baselines import TransformerLM
from reformer import ReformerConfig, ReformerLM
from reformer.lsh import LSHSelfAttention
from reformer.lsh.hashing import hash_vectors
from reformer.reference import lsh_decode_keys_reference

SMALL = dict(vocab_size=50, d_model=32, n_heads=2, n_layers=2, d_ff=64, max_seq_len=64)
LENGTHS = [5, 9, 2, 9]  # padded rows, unpadded rows, a 2-token prompt
STEPS = 12


def _model(family: str, **fields) -> torch.nn.Module:
    config = ReformerConfig(**SMALL | fields)
    torch.manual_seed(0)
    model = (ReformerLM if family == "reformer" else TransformerLM)(config)
    return model.double().train(False)


def _ragged(prompts: list[torch.Tensor], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad prompts (1, n_b) into tokens (B, P) and the mask (B, P), True at real ones."""
    width = max(p.shape[1] for p in prompts)
    tokens = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros(len(prompts), width, dtype=torch.bool)
    for row, prompt in enumerate(prompts):
        tokens[row, width - prompt.shape[1] :] = prompt[0]
        mask[row, width - prompt.shape[1] :] = True
    return tokens, mask


def _teacher_forced(model, prompt, follow, mask=None) -> torch.Tensor:
    """Logits (B, 1 + steps, vocab): the prefill of prompt (B, P) and one step per token of
    follow (B, steps), all on caches sized for them."""
    capacity = prompt.shape[1] + follow.shape[1]
    caches = model.new_caches(prompt.shape[0], capacity, next(model.parameters()))
    with torch.no_grad():
        out = [model.decode(prompt, caches, mask)]
        out += [model.decode(follow[:, i : i + 1], caches) for i in range(follow.shape[1])]
    return torch.stack(out, dim=1)


class _SameDraws:
    """Every generation with the model's hash generators where they started, so a row
    decoded alone draws the rotations its batch drew."""

    def __init__(self, model) -> None:
        self.blocks = list(getattr(model, "blocks", []))
        self.states = [block.rng_state() for block in self.blocks]

    def reset(self) -> None:
        for block, state in zip(self.blocks, self.states, strict=True):
            block.set_rng_state(state)


# LSH with bucket_size >= every context (the window holds every past position), the same
# model with a reversible stack and axial positions, full and SDPA key/value caches.
CASES = {
    "reformer-lsh": ("reformer", dict(attention="lsh", bucket_size=32)),
    "reformer-lsh-axial-rev": (
        "reformer",
        dict(attention="lsh", bucket_size=32, axial_shape=(8, 8), reversible=True),
    ),
    "reformer-full": ("reformer", dict(attention="full", reversible=False)),
    "reformer-sdpa": ("reformer", dict(attention="sdpa")),
    "reformer-local": ("reformer", dict(attention="local", bucket_size=32)),
    "transformer-sdpa": ("transformer", dict(attention="sdpa")),
    "transformer-full": ("transformer", dict(attention="full")),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_row_of_a_ragged_batch_decodes_as_it_does_alone(case):
    family, fields = CASES[case]
    model = _model(family, **fields)
    draws = _SameDraws(model)
    generator = torch.Generator().manual_seed(1)
    prompts = [torch.randint(0, 50, (1, n), generator=generator) for n in LENGTHS]
    follow = torch.randint(0, 50, (len(LENGTHS), STEPS), generator=generator)
    tokens, mask = _ragged(prompts)
    batch = _teacher_forced(model, tokens, follow, mask)
    draws.reset()
    generated = model.generate(tokens, STEPS, temperature=0, attention_mask=mask)
    assert torch.equal(generated[:, : tokens.shape[1]], tokens)  # the padding is kept
    for row, prompt in enumerate(prompts):
        draws.reset()
        alone = _teacher_forced(model, prompt, follow[row : row + 1])
        torch.testing.assert_close(batch[row], alone[0], rtol=1e-10, atol=1e-10)
        draws.reset()
        alone_tokens = model.generate(prompt, STEPS, temperature=0)
        assert torch.equal(generated[row, tokens.shape[1] :], alone_tokens[0, prompt.shape[1] :])


def test_lsh_rows_agree_past_one_chunk_when_the_bucket_count_is_fixed():
    """bucket_size 4 < context 4 + 30, two rounds, bucket mates in play: with n_buckets
    fixed every row hashes as it does alone, and prompts within one chunk prefill
    exactly, so the key sets (and logits) are the row's own."""
    model = _model("reformer", attention="lsh", bucket_size=4, n_buckets=4, n_hashes=2)
    draws = _SameDraws(model)
    generator = torch.Generator().manual_seed(2)
    prompts = [torch.randint(0, 50, (1, n), generator=generator) for n in (4, 1, 3)]
    follow = torch.randint(0, 50, (3, 30), generator=generator)
    tokens, mask = _ragged(prompts)
    batch = _teacher_forced(model, tokens, follow, mask)
    for row, prompt in enumerate(prompts):
        draws.reset()
        alone = _teacher_forced(model, prompt, follow[row : row + 1])
        torch.testing.assert_close(batch[row], alone[0], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    ("family", "fields"),
    [
        ("reformer", dict(attention="lsh", bucket_size=4, n_hashes=2)),  # past one chunk
        ("transformer", dict(attention="sdpa")),
    ],
)
def test_a_batch_decodes_each_row_as_it_does_alone(family, fields):
    """Equal lengths, no mask: the rows share caches' rotations and capacity, so even with
    bucket_size far below the context each row is its own (prefill over several chunks)."""
    model = _model(family, **fields)
    draws = _SameDraws(model)
    generator = torch.Generator().manual_seed(3)
    prompt = torch.randint(0, 50, (3, 10), generator=generator)
    follow = torch.randint(0, 50, (3, 20), generator=generator)
    batch = _teacher_forced(model, prompt, follow)
    draws.reset()
    generated = model.generate(prompt, 20, temperature=0)
    for row in range(3):
        draws.reset()
        alone = _teacher_forced(model, prompt[row : row + 1], follow[row : row + 1])
        torch.testing.assert_close(batch[row], alone[0], rtol=1e-10, atol=1e-10)
        draws.reset()
        alone_tokens = model.generate(prompt[row : row + 1], 20, temperature=0)
        assert torch.equal(generated[row], alone_tokens[0])


@pytest.mark.parametrize("family", ["reformer", "transformer"])
def test_padded_ids_are_never_read(family):
    model = _model(family, attention="lsh" if family == "reformer" else "sdpa", bucket_size=32)
    draws = _SameDraws(model)
    generator = torch.Generator().manual_seed(4)
    prompts = [torch.randint(0, 50, (1, n), generator=generator) for n in LENGTHS]
    outs = []
    for pad_id in (0, 49):
        draws.reset()
        tokens, mask = _ragged(prompts, pad_id)
        outs.append(model.generate(tokens, STEPS, temperature=0, attention_mask=mask))
    assert torch.equal(outs[0][:, -STEPS:], outs[1][:, -STEPS:])


def test_a_mask_with_no_padding_changes_nothing():
    model = _model("reformer", attention="lsh", bucket_size=4)
    draws = _SameDraws(model)
    prompt = torch.randint(0, 50, (2, 7), generator=torch.Generator().manual_seed(5))
    plain = model.generate(prompt, 10, temperature=0)
    draws.reset()
    mask = torch.ones(2, 7, dtype=torch.bool)
    assert torch.equal(model.generate(prompt, 10, temperature=0, attention_mask=mask), plain)


def _mask(rows: list[list[int]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.bool)


@pytest.mark.parametrize(
    ("mask", "use_cache", "named"),
    [
        (_mask([[0, 1, 1], [1, 1, 1]]).long(), True, "dtype"),
        (_mask([[0, 1, 1]]), True, "shape"),
        ([[False, True, True], [True, True, True]], True, "must be a"),
        (_mask([[1, 1, 0], [1, 1, 1]]), True, "not left-padded"),
        (_mask([[0, 1, 0], [1, 1, 1]]), True, "not left-padded"),
        (_mask([[0, 0, 0], [1, 1, 1]]), True, "no real token"),
        (_mask([[0, 1, 1], [1, 1, 1]]), False, "use_cache"),
    ],
)
@pytest.mark.parametrize("family", ["reformer", "transformer"])
def test_bad_attention_masks_are_refused_by_name(family, mask, use_cache, named):
    model = _model(family, attention="lsh" if family == "reformer" else "sdpa")
    prompt = torch.zeros(2, 3, dtype=torch.long)
    with pytest.raises(ValueError, match="attention_mask") as error:
        model.generate(prompt, 2, attention_mask=mask, use_cache=use_cache)
    assert named in str(error.value)


@pytest.mark.parametrize("family", ["reformer", "transformer"])
def test_a_padding_mask_after_the_prefill_is_refused(family):
    model = _model(family, attention="lsh" if family == "reformer" else "sdpa")
    caches = model.new_caches(2, 8, next(model.parameters()))
    with torch.no_grad():
        model.decode(torch.zeros(2, 3, dtype=torch.long), caches)
        with pytest.raises(ValueError, match="padding_mask is given on the prefill only"):
            model.decode(
                torch.zeros(2, 1, dtype=torch.long), caches, torch.ones(2, 1, dtype=torch.bool)
            )


def test_a_ragged_lsh_caches_key_sets_are_each_rows_own_over_overflowing_buckets():
    """The rule on a left-padded batch against its twin on each row's real positions alone:
    few buckets and small chunks (lists overflow, rounds share keys), the prompt through
    the bulk insertion with its pads in the bucket past the last, then 80 steps."""
    config = ReformerConfig(
        **SMALL | {"n_layers": 1, "max_seq_len": 128}, n_hashes=3, bucket_size=4, n_buckets=8
    )
    torch.manual_seed(6)
    layer = LSHSelfAttention(config).double()
    batch, length, prompt = 3, 100, 17
    first = torch.tensor([0, 5, 16])  # pads before each row's first real slot
    x = torch.randn(batch, length, 32, dtype=torch.float64)
    cache = layer.new_cache(batch, length, x)
    cache.set_first(first)
    all_buckets = hash_vectors(layer.project(x)[0], cache.rotations, cache.factors)
    real = torch.arange(prompt)[None, :] >= first[:, None]  # (B, prompt)
    padded = all_buckets[..., :prompt].masked_fill(~real[:, None, None, :], 8)
    cache.store(x[:, :prompt], padded)
    for t in range(prompt, length):
        positions, valid = cache.key_positions(all_buckets[..., t])
        for b in range(batch):
            start = int(first[b])
            for h in range(2):
                got = set(positions[b, h][valid[b, h]].tolist())
                own = lsh_decode_keys_reference(all_buckets[b, h, :, start : t + 1], 4)
                assert got == {s + start for s in own}, (t, b, h)
        cache.store(x[:, t : t + 1], all_buckets[..., t : t + 1])


@pytest.mark.parametrize("family", ["reformer", "transformer"])
def test_decode_names_its_own_padding_mask_when_refusing_one(family):
    model = _model(family, attention="lsh" if family == "reformer" else "sdpa")
    caches = model.new_caches(2, 8, next(model.parameters()))
    right_padded = _mask([[1, 1, 0], [1, 1, 1]])
    with torch.no_grad(), pytest.raises(ValueError, match="padding_mask rows \\[0\\] are not"):
        model.decode(torch.zeros(2, 3, dtype=torch.long), caches, right_padded)


def test_local_rows_agree_past_one_chunk_when_every_prompt_fits_one():
    """Local attention, bucket_size 8 < context 8 + 30: each step's window is its row's
    own (counted from its first real token), and prompts within one chunk prefill as
    they do alone, so every row's logits are its own."""
    model = _model("reformer", attention="local", bucket_size=8)
    generator = torch.Generator().manual_seed(7)
    prompts = [torch.randint(0, 50, (1, n), generator=generator) for n in (5, 8, 2, 8)]
    follow = torch.randint(0, 50, (4, 30), generator=generator)
    tokens, mask = _ragged(prompts)
    batch = _teacher_forced(model, tokens, follow, mask)
    generated = model.generate(tokens, 30, temperature=0, attention_mask=mask)
    for row, prompt in enumerate(prompts):
        alone = _teacher_forced(model, prompt, follow[row : row + 1])
        torch.testing.assert_close(batch[row], alone[0], rtol=1e-10, atol=1e-10)
        alone_tokens = model.generate(prompt, 30, temperature=0)
        assert torch.equal(generated[row, tokens.shape[1] :], alone_tokens[0, prompt.shape[1] :])
