"""Chunked feed-forward (Reformer sec. 3, "Chunking"): same values and gradients as the
unchunked FF, and saved memory that no longer scales with d_ff x L."""

from __future__ import annotations

import pytest
import torch

from reformer.config import ReformerConfig
from reformer.feedforward import FeedForward
from reformer.model import ReformerLM
from suites.harness.saved_bytes import saved_bytes


def _feedforwards(ff_chunks: int, d_model=16, d_ff=64):
    config = ReformerConfig(d_model=d_model, n_heads=2, d_ff=d_ff, ff_chunks=ff_chunks)
    torch.manual_seed(0)
    plain = FeedForward(config.replace(ff_chunks=1)).double()
    chunked = FeedForward(config).double()
    chunked.load_state_dict(plain.state_dict())
    return plain, chunked


@pytest.mark.parametrize("ff_chunks,seq_len", [(2, 12), (3, 10), (7, 5), (12, 12)])
def test_chunked_equals_unchunked_values_and_grads(ff_chunks, seq_len):
    plain, chunked = _feedforwards(ff_chunks)
    x = torch.randn(2, seq_len, 16, dtype=torch.float64)
    grad_out = torch.randn(2, seq_len, 16, dtype=torch.float64)
    results = []
    for module in (plain, chunked):
        inp = x.clone().requires_grad_()
        out = module(inp)
        out.backward(grad_out)
        results.append((out.detach(), inp.grad, [p.grad for p in module.parameters()]))
    (out_p, gx_p, gp_p), (out_c, gx_c, gp_c) = results
    torch.testing.assert_close(out_c, out_p, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(gx_c, gx_p, rtol=1e-12, atol=1e-14)
    for got, expected in zip(gp_c, gp_p, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-14)


def test_chunked_saves_only_its_input():
    plain, chunked = _feedforwards(4, d_model=16, d_ff=256)
    x = torch.randn(2, 64, 16, requires_grad=True)
    chunked_bytes, _ = saved_bytes(lambda: chunked(x.double()))
    plain_bytes, _ = saved_bytes(lambda: plain(x.double()))
    input_bytes = x.numel() * 8
    assert chunked_bytes == input_bytes
    # Unchunked keeps at least the d_ff-wide pre- and post-GELU activations.
    assert plain_bytes >= input_bytes + 2 * 2 * 64 * 256 * 8


def test_frozen_parameters_and_input_without_grad():
    plain, chunked = _feedforwards(3)
    for module in (plain, chunked):
        module.w_in.weight.requires_grad_(False)
    x = torch.randn(1, 9, 16, dtype=torch.float64)
    grads = [torch.autograd.grad(m(x).square().sum(), m.w_out.weight)[0] for m in (plain, chunked)]
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-12, atol=1e-14)


def test_model_chunked_equals_unchunked_loss_grads_and_saves_less():
    config = ReformerConfig(
        vocab_size=32,
        d_model=16,
        n_heads=2,
        n_layers=2,
        d_ff=128,
        attention="full",
        reversible=False,
        max_seq_len=64,
    )
    torch.manual_seed(0)
    plain = ReformerLM(config).double()
    chunked = ReformerLM(config.replace(ff_chunks=4)).double()
    chunked.load_state_dict(plain.state_dict())
    tokens = torch.randint(0, 32, (2, 64))
    measured = []
    for model in (plain, chunked):
        nbytes, loss = saved_bytes(lambda model=model: model.loss(tokens))
        loss.backward()
        measured.append((nbytes, loss.detach(), {n: p.grad for n, p in model.named_parameters()}))
    (bytes_p, loss_p, grads_p), (bytes_c, loss_c, grads_c) = measured
    torch.testing.assert_close(loss_c, loss_p, rtol=1e-12, atol=0)
    for name, grad in grads_p.items():
        torch.testing.assert_close(grads_c[name], grad, rtol=1e-10, atol=1e-13)
    assert bytes_c < bytes_p
