"""Duplication task data (0w0w) and its second-half mask; accuracy and bits-per-byte metrics."""

import math

import pytest
import torch

from suites.quality.data import duplication_batch, second_half_mask
from suites.quality.metrics import Tally


def test_sequences_are_0w0w_with_symbols_1_to_127():
    tokens = duplication_batch(16, 20, torch.Generator().manual_seed(0))
    assert tokens.shape == (16, 20) and tokens.dtype == torch.int64
    assert (tokens[:, 0] == 0).all() and (tokens[:, 10] == 0).all()
    assert torch.equal(tokens[:, 1:10], tokens[:, 11:])
    w = tokens[:, 1:10]
    assert w.min() >= 1 and w.max() <= 127
    assert len(torch.unique(w)) > 50  # symbols actually vary


def test_same_seed_same_data_other_seed_other_data():
    first = duplication_batch(4, 32, torch.Generator().manual_seed(3))
    assert torch.equal(first, duplication_batch(4, 32, torch.Generator().manual_seed(3)))
    assert not torch.equal(first, duplication_batch(4, 32, torch.Generator().manual_seed(4)))


def test_mask_covers_exactly_the_second_copy_of_w():
    # L = 8: tokens 0 a b c 0 a b c; targets tokens[1:] = a b c 0 a b c; scored: a b c (2nd).
    mask = second_half_mask(8)
    assert mask.tolist() == [False, False, False, False, True, True, True]
    tokens = duplication_batch(2, 8, torch.Generator().manual_seed(0))
    targets = tokens[:, 1:]
    assert torch.equal(targets[:, mask], tokens[:, 1:4])  # the copy of w, nothing else


@pytest.mark.parametrize("seq_len", [7, 2, 0])
def test_bad_length_names_the_field(seq_len):
    with pytest.raises(ValueError, match="seq_len"):
        duplication_batch(1, seq_len, torch.Generator())


def _logits_predicting(predictions, vocab=10):
    """Logits (B, T, vocab) whose argmax is ``predictions`` (B, T)."""
    return torch.nn.functional.one_hot(predictions, vocab).float() * 5.0


def test_accuracy_on_hand_made_predictions():
    targets = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])
    predictions = torch.tensor([[1, 0, 3, 0], [5, 6, 0, 0]])
    everything = Tally()
    everything.add(_logits_predicting(predictions), targets)
    assert everything.accuracy == pytest.approx(4 / 8)
    last_two = Tally()  # only the last two columns count
    last_two.add(_logits_predicting(predictions), targets, torch.tensor([False, False, True, True]))
    assert last_two.accuracy == pytest.approx(1 / 4)


def test_tally_matches_hand_counts_over_batches():
    # Two batches; masked-out positions must not count even when they are wrong.
    logits = torch.full((1, 3, 4), -10.0)
    logits[0, 0, 1] = logits[0, 1, 2] = logits[0, 2, 0] = 10.0  # predicts 1, 2, 0
    targets = torch.tensor([[1, 3, 0]])
    tally = Tally()
    tally.add(logits, targets, torch.tensor([True, True, True]))
    tally.add(logits, targets, torch.tensor([True, False, False]))
    assert (tally.correct, tally.count) == (3, 4)
    assert tally.accuracy == pytest.approx(0.75)


def test_uniform_prediction_over_bytes_is_eight_bits_per_byte():
    tally = Tally()
    tally.add(torch.zeros(2, 5, 256), torch.randint(0, 256, (2, 5)))
    assert tally.bits_per_token == pytest.approx(8.0)
    assert tally.loss == pytest.approx(math.log(256))
