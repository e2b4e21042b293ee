"""The sliced LM loss (reformer.loss) against its one-shot twin."""

import pytest
import torch
from torch import nn

from reformer.loss import next_token_loss, next_token_loss_reference
from suites.harness.saved_bytes import saved_bytes


def _case(batch=2, length=37, d=8, vocab=11, seed=0):
    gen = torch.Generator().manual_seed(seed)
    head = nn.Linear(d, vocab, bias=False).double()
    with torch.no_grad():
        head.weight.copy_(torch.randn(vocab, d, generator=gen, dtype=torch.float64))
    hidden = torch.randn(batch, length, d, generator=gen, dtype=torch.float64, requires_grad=True)
    tokens = torch.randint(0, vocab, (batch, length), generator=gen)
    return head, hidden, tokens


def _value_and_grads(loss_fn, head, hidden, tokens):
    head.zero_grad()
    hidden.grad = None
    loss = loss_fn(head, hidden, tokens)
    loss.backward()
    return loss.detach(), hidden.grad.clone(), head.weight.grad.clone()


@pytest.mark.parametrize("chunk_tokens", [1, 10, 35, 72, 73, 1000])
def test_sliced_loss_equals_the_one_shot_loss_and_its_gradients(chunk_tokens):
    head, hidden, tokens = _case()
    want = _value_and_grads(next_token_loss_reference, head, hidden, tokens)
    got = _value_and_grads(
        lambda *a: next_token_loss(*a, chunk_tokens=chunk_tokens), head, hidden, tokens
    )
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12)


def test_sliced_loss_without_grad_equals_the_one_shot_loss():
    head, hidden, tokens = _case()
    with torch.no_grad():
        torch.testing.assert_close(
            next_token_loss(head, hidden, tokens, chunk_tokens=5),
            next_token_loss_reference(head, hidden, tokens),
        )


def test_sliced_loss_saves_no_logits_for_backward():
    length, d, vocab = 4096, 16, 256
    head = nn.Linear(d, vocab, bias=False)
    hidden = torch.randn(1, length, d, requires_grad=True)
    tokens = torch.randint(0, vocab, (1, length))
    logits_bytes = length * vocab * 4
    one_shot, _ = saved_bytes(lambda: next_token_loss_reference(head, hidden, tokens))
    sliced, _ = saved_bytes(lambda: next_token_loss(head, hidden, tokens, chunk_tokens=256))
    assert one_shot >= logits_bytes  # the log-softmax of the whole (L, vocab) logits
    assert sliced < logits_bytes / 4  # only the slices' inputs (hidden, targets)


def test_bad_input_names_the_problem():
    head, hidden, tokens = _case()
    with pytest.raises(ValueError, match="seq_len >= 2"):
        next_token_loss(head, hidden[:, :1], tokens[:, :1])
    with pytest.raises(ValueError, match="chunk_tokens"):
        next_token_loss(head, hidden, tokens, chunk_tokens=0)
    with pytest.raises(ValueError, match="hidden"):
        next_token_loss(head, hidden[:, :5], tokens)
