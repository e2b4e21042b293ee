"""Backend choice for LSH attention: names, the auto rule, and clear errors."""

from __future__ import annotations

import pytest
import torch

from reformer import LSHSelfAttention, ReformerConfig, lsh_attention
from reformer.backends import BACKENDS, resolve_backend, triton_installed


def test_torch_is_always_torch():
    assert resolve_backend("torch", "cpu", torch.float64, 1024, 512) == "torch"
    assert resolve_backend("torch", "cuda", torch.float16, 64, 64) == "torch"


def test_auto_is_torch_on_cpu_even_under_the_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert resolve_backend("auto", "cpu", torch.float32, 64, 64) == "torch"


def test_auto_on_cuda_takes_triton_within_its_limits():
    expected = "triton" if triton_installed() else "torch"
    assert resolve_backend("auto", "cuda", torch.bfloat16, 64, 64) == expected
    assert resolve_backend("auto", "cuda", torch.float64, 64, 64) == "torch"
    assert resolve_backend("auto", "cuda", torch.float16, 128, 64) == "torch"
    assert resolve_backend("auto", "cuda", torch.float32, 64, 128) == "torch"


def test_triton_where_it_cannot_run_names_the_field(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(ValueError, match="backend='triton'"):
        resolve_backend("triton", "cpu", torch.float32, 64, 64)
    with pytest.raises(ValueError, match="backend='triton'.*bucket_size"):
        resolve_backend("triton", "cuda", torch.float32, 256, 64)
    with pytest.raises(ValueError, match="backend='triton'.*dtype"):
        resolve_backend("triton", "cuda", torch.float64, 64, 64)


@pytest.mark.skipif(not triton_installed(), reason="triton is not installed")
def test_triton_on_cpu_under_the_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert resolve_backend("triton", "cpu", torch.float32, 8, 16) == "triton"


def test_unknown_backend_lists_the_allowed_values():
    with pytest.raises(ValueError, match=r"backend='cuda'.*\('auto', 'torch', 'triton'\)"):
        resolve_backend("cuda", "cpu", torch.float32, 64, 64)
    with pytest.raises(ValueError, match="backend"):
        ReformerConfig(backend="fused")
    assert BACKENDS == ("auto", "torch", "triton")


def test_lsh_attention_and_the_module_pass_the_backend_on(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    qk, v = torch.randn(1, 2, 16, 8), torch.randn(1, 2, 16, 8)
    with pytest.raises(ValueError, match="backend"):
        lsh_attention(qk, v, n_hashes=2, bucket_size=4, seed=0, backend="triton")
    torch_out = lsh_attention(qk, v, n_hashes=2, bucket_size=4, seed=0, backend="torch")
    auto_out = lsh_attention(qk, v, n_hashes=2, bucket_size=4, seed=0)
    assert torch.equal(torch_out, auto_out)
    layer = LSHSelfAttention(ReformerConfig(d_model=16, n_heads=2, bucket_size=4, backend="triton"))
    with pytest.raises(ValueError, match="backend"):
        layer(torch.randn(1, 16, 16))
