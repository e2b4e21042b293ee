"""NaN and inf where a query may not look: the checks every LSH backend runs.

Not collected by itself (the name has no test_ prefix): ``test_lsh_nonfinite.py`` runs
these for the torch path and the C kernel, ``lsh_triton_cases.py`` for the Triton kernels
(under the interpreter in a child process, see ``test_lsh_triton.py``).

What they pin down (``reformer/lsh/attention.py``, module docstring):

- whatever padded positions hold (NaN, inf, huge values: what ``torch.empty`` gives) changes
  no real output and no gradient, including with internal padding (L not a multiple of
  ``bucket_size``);
- under ``causal=True`` NaN or inf in v at positions >= t changes no output before t, nor
  the gradient of those outputs (with respect to every position);
- a query whose window holds an allowed key with NaN or inf in its v gets NaN in its whole
  output row: exactly those queries, as the reference twin says.
"""

from __future__ import annotations

import torch

from reformer import lsh_attention
from reformer.reference import lsh_attention_reference

# What a torch.empty buffer may hold where nothing was written.
GARBAGE = (float("nan"), float("inf"), float("-inf"), 3e38, -3e38)
NON_FINITE = (float("nan"), float("inf"), float("-inf"))


def garbage_like(x: torch.Tensor, values=GARBAGE) -> torch.Tensor:
    """A tensor like x whose entries cycle through ``values``."""
    table = torch.tensor(values, dtype=x.dtype, device=x.device)
    index = torch.arange(x.numel(), device=x.device) % len(values)
    return table[index].view(x.shape)


def _inputs(batch, heads, length, dim, seed):
    gen = torch.Generator().manual_seed(seed)
    qk = torch.randn(batch, heads, length, dim, generator=gen)
    v = torch.randn(batch, heads, length, dim, generator=gen)
    return qk, v, gen


def _run(backend, device, qk, v, weight, **call):
    qk, v = (x.to(device).requires_grad_() for x in (qk, v))
    out = lsh_attention(qk, v, backend=backend, **call)
    assert isinstance(out, torch.Tensor)
    grads = torch.autograd.grad((out * weight.to(device)).sum(), (qk, v))
    return out.detach().cpu(), [g.cpu() for g in grads]


def check_padded_contents_reach_nothing(backend: str, device: str, causal: bool) -> None:
    """NaN, inf and huge values at padded positions (a hole and right padding, L = 20 not a
    multiple of the chunk) change no real output and no gradient, bit for bit."""
    qk, v, gen = _inputs(2, 2, 20, 6, seed=0)
    mask = torch.ones(2, 20, dtype=torch.bool)
    mask[0, 5:9] = False  # a hole
    mask[1, 14:] = False  # right padding
    padded = ~mask[:, None, :, None]
    real = mask[:, None, :, None]
    weight = torch.randn(v.shape, generator=gen) * real  # padded outputs carry no meaning
    call = dict(n_hashes=2, bucket_size=8, causal=causal, seed=1, padding_mask=mask.to(device))
    clean_out, clean_grads = _run(backend, device, qk, v, weight, **call)
    dirty_qk = torch.where(padded, garbage_like(qk), qk)
    dirty_v = torch.where(padded, garbage_like(v).flip(-1), v)
    dirty_out, dirty_grads = _run(backend, device, dirty_qk, dirty_v, weight, **call)
    assert torch.isfinite(clean_out * real).all()
    torch.testing.assert_close(dirty_out * real, clean_out * real, rtol=0, atol=0)
    for name, dirty, clean in zip(("qk", "v"), dirty_grads, clean_grads, strict=True):
        assert torch.isfinite(dirty).all(), name
        torch.testing.assert_close(dirty, clean, rtol=0, atol=0, msg=name)


def check_future_values_reach_no_earlier_query(
    backend: str, device: str, dtype: torch.dtype = torch.float32
) -> None:
    """Under causal=True, NaN and inf in v at positions >= t (several chunks, so a query's
    window holds keys after it) change no output before t nor its gradient with respect to
    any position; every output from t on sees its own bad value and is NaN."""
    t = 13
    qk, v, gen = _inputs(2, 2, 24, 6, seed=1)
    weight = torch.randn(v.shape, generator=gen).to(dtype)
    qk, v = qk.to(dtype), v.to(dtype)
    weight[:, :, t:] = 0.0  # a loss of the outputs before t
    call = dict(n_hashes=3, bucket_size=4, causal=True, seed=2)
    clean_out, clean_grads = _run(backend, device, qk, v, weight, **call)
    dirty_v = v.clone()
    dirty_v[:, :, t:] = garbage_like(v[:, :, t:], NON_FINITE)
    dirty_out, dirty_grads = _run(backend, device, qk, dirty_v, weight, **call)
    torch.testing.assert_close(dirty_out[:, :, :t], clean_out[:, :, :t], rtol=0, atol=0)
    assert torch.isfinite(dirty_out[:, :, :t]).all()
    assert torch.isnan(dirty_out[:, :, t:]).all()
    for name, dirty, clean in zip(("qk", "v"), dirty_grads, clean_grads, strict=True):
        assert torch.isfinite(dirty).all(), name
        torch.testing.assert_close(dirty, clean, rtol=0, atol=0, msg=name)


def check_nan_reaches_the_queries_that_may_see_it(
    backend: str, device: str, causal: bool, atol: float
) -> None:
    """NaN or inf in v at a few real positions makes exactly the real queries that may see
    one of them (the reference twin's rule) NaN, row by row; every other output is as the
    reference computes it."""
    qk, v, gen = _inputs(2, 1, 20, 6, seed=2)
    mask = torch.ones(2, 20, dtype=torch.bool)
    mask[1, 15:] = False
    v[0, 0, 11, 2] = float("nan")
    v[1, 0, 6, 0] = float("inf")
    v[1, 0, 12] = float("-inf")
    out, buckets = lsh_attention(
        qk.to(device),
        v.to(device),
        n_hashes=2,
        bucket_size=4,
        causal=causal,
        seed=3,
        padding_mask=mask.to(device),
        return_buckets=True,
        backend=backend,
    )
    ref = lsh_attention_reference(
        qk.double(), v.double(), buckets.cpu(), bucket_size=4, causal=causal, padding_mask=mask
    )
    real = mask[:, None, :, None].expand_as(ref)
    out = out.cpu().double()
    assert torch.equal(torch.isnan(out)[real], torch.isnan(ref)[real])
    hit = torch.isnan(ref).all(-1)[mask[:, None, :]]
    assert hit.any() and not hit.all()  # some queries see a bad value, some do not
    assert not torch.isinf(out[real]).any()
    finite = real & torch.isfinite(ref)
    torch.testing.assert_close(out[finite], ref[finite], rtol=0, atol=atol)
