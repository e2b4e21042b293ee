"""The duplicate correction keeps exactly one occurrence of each key a query sees.

The torch path masks every occurrence of a key but the one in the earliest round (see
``reformer.lsh.torch_path.slices._mask_seen_before``) instead of dividing each
occurrence's weight by its count. Its twin is ``reference.window_counts``, which lists
every (round, window slot) occurrence from scratch: the visible occurrences must be 1
exactly where the count is positive (and the key is not in the query's future), and 0
elsewhere.
"""

from __future__ import annotations

import pytest
import torch

from reformer.lsh.layout import Layout
from reformer.lsh.torch_path.rows import Rows, Workspace
from reformer.lsh.torch_path.slices import _windows, build_slice, round_chunks
from reformer.reference import window_counts


def _visible_occurrences(buckets: torch.Tensor, layout: Layout) -> torch.Tensor:
    """(Lp, Lp): for each (query, key), how many of the slices' occurrences are unmasked."""
    length = layout.padded_len
    positions = torch.arange(length)
    sort_idx = torch.argsort(buckets * length + positions, dim=-1)[None, None]
    chunk_of = round_chunks(sort_idx, layout, torch.float32)
    # Zero qk: every unmasked logit is exactly 0 and the self slot exactly its constant,
    # so what the bias masked is all that is left to read.
    qk = torch.zeros(1, 1, length, 4)
    seen = torch.zeros(length, length, dtype=torch.long)
    ws = Workspace(qk.device)
    for group in layout.groups():
        rows = Rows(layout, group, qk.device)
        for rnd in range(layout.n_hashes):
            for chunks in layout.chunk_blocks(1):
                piece = build_slice(
                    qk, qk, sort_idx, None, chunk_of, layout, rows, group, rnd, chunks, ws
                )
                visible = piece.logits > -1e8  # (1, 1, n, c, w)
                n_chunks = chunks[1] - chunks[0]
                queries = piece.query_pos.view(n_chunks, layout.bucket_size, 1)
                keys = _windows(piece.key_pos.unsqueeze(-1), layout, n_chunks).squeeze(-1)
                queries, keys = torch.broadcast_tensors(queries, keys[0, 0].unsqueeze(1))
                seen.index_put_(
                    (queries[visible[0, 0]], keys[visible[0, 0]]),
                    torch.ones(int(visible.sum()), dtype=torch.long),
                    accumulate=True,
                )
    return seen


@pytest.mark.parametrize("n_hashes", [2, 3, 4])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("slice_elements", [1 << 20, 40])
@pytest.mark.parametrize("seed", [0, 1])
def test_each_seen_key_is_kept_once(n_hashes, causal, slice_elements, seed):
    length, chunk = 32, 4
    # Few buckets, so keys meet a query in several rounds and at round boundaries.
    gen = torch.Generator().manual_seed(seed)
    buckets = torch.randint(0, 3, (n_hashes, length), generator=gen)
    layout = Layout(
        batch=1,
        n_heads=1,
        n_hashes=n_hashes,
        padded_len=length,
        bucket_size=chunk,
        causal=causal,
        dup_correction=True,
        scale=1.0,
        slice_elements=slice_elements,
    )
    counts = window_counts(buckets, chunk)
    assert int(counts.max()) > 1  # the case has duplicates to correct
    expected = (counts > 0).long()
    if causal:
        expected = expected.tril()
    torch.testing.assert_close(_visible_occurrences(buckets, layout), expected)


def test_without_the_correction_every_occurrence_counts():
    length, chunk, n_hashes = 32, 4, 3
    buckets = torch.randint(0, 3, (n_hashes, length), generator=torch.Generator().manual_seed(2))
    layout = Layout(
        batch=1,
        n_heads=1,
        n_hashes=n_hashes,
        padded_len=length,
        bucket_size=chunk,
        causal=False,
        dup_correction=False,
        scale=1.0,
    )
    torch.testing.assert_close(_visible_occurrences(buckets, layout), window_counts(buckets, chunk))
