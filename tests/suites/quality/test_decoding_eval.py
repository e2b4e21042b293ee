"""The byte LM scored by incremental decoding: the same targets as the full forward."""

from __future__ import annotations

import pytest
import torch

from reformer import ReformerConfig, ReformerLM
from suites.quality.metrics import evaluate_bytes, evaluate_bytes_incremental
from suites.rows.names import decoded_attention, label


def test_incremental_scoring_equals_the_forward_when_one_chunk_covers_the_window():
    config = ReformerConfig(
        vocab_size=256, d_model=32, n_heads=2, n_layers=2, d_ff=64, bucket_size=64,
        max_seq_len=64,
    )  # fmt: skip
    torch.manual_seed(0)
    model = ReformerLM(config).eval()
    batches = list(torch.randint(0, 256, (6, 40)).split(3))
    forward, incremental = (
        evaluate_bytes(model, batches),
        evaluate_bytes_incremental(model, batches),
    )
    assert incremental.count == forward.count == 6 * 39
    assert incremental.loss == pytest.approx(forward.loss, rel=1e-6)


def test_incremental_scoring_differs_once_chunks_hash():
    """Many chunks: the decoding rule sees other keys than the sorted chunks do."""
    config = ReformerConfig(
        vocab_size=256, d_model=32, n_heads=2, n_layers=2, d_ff=64, bucket_size=4,
        n_hashes=2, max_seq_len=64,
    )  # fmt: skip
    torch.manual_seed(0)
    model = ReformerLM(config).eval()
    batches = [torch.randint(0, 256, (2, 64))]
    assert evaluate_bytes_incremental(model, batches).loss != evaluate_bytes(model, batches).loss


def test_decoding_names():
    assert decoded_attention("decode-lsh-4") == "lsh-4"
    assert decoded_attention("lsh-4") is None and decoded_attention("decode-sdpa") is None
    assert label("decode-lsh-8") == "LSH-8 decoding"
