"""Backend choice for LSH attention: names, the auto rule, and clear errors."""

from __future__ import annotations

import pytest
import torch

from reformer import LSHSelfAttention, ReformerConfig, lsh_attention
from reformer.lsh import dispatch
from reformer.lsh.dispatch import BACKENDS, resolve_backend, triton_installed, triton_runnable


def test_torch_is_always_torch():
    assert resolve_backend("torch", "cpu", torch.float64, 1024, 512) == "torch"
    assert resolve_backend("torch", "cuda", torch.float16, 64, 64) == "torch"


def test_auto_never_picks_triton_on_cpu_even_under_the_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert resolve_backend("auto", "cpu", torch.float32, 64, 64) in ("torch", "cpu")
    assert resolve_backend("auto", "cpu", torch.float64, 64, 64) == "torch"


@pytest.fixture
def fresh_probe():
    """The probe's cached answer and warning cleared before and after a test."""
    dispatch.triton_runnable.cache_clear()
    dispatch._warn_fallback.cache_clear()
    yield
    dispatch.triton_runnable.cache_clear()
    dispatch._warn_fallback.cache_clear()


def test_auto_on_cuda_takes_triton_within_its_limits():
    expected = "triton" if triton_installed() and triton_runnable() is None else "torch"
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
    with pytest.raises(ValueError, match=r"backend='cuda'.*\('auto', 'torch', 'triton', 'cpu'\)"):
        resolve_backend("cuda", "cpu", torch.float32, 64, 64)
    with pytest.raises(ValueError, match="backend"):
        ReformerConfig(backend="fused")
    assert BACKENDS == ("auto", "torch", "triton", "cpu")


def test_lsh_attention_and_the_module_pass_the_backend_on(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    qk, v = torch.randn(1, 2, 16, 8), torch.randn(1, 2, 16, 8)
    with pytest.raises(ValueError, match="backend"):
        lsh_attention(qk, v, n_hashes=2, bucket_size=4, seed=0, backend="triton")
    torch_out = lsh_attention(qk, v, n_hashes=2, bucket_size=4, seed=0, backend="torch")
    auto_out = lsh_attention(qk.double(), v.double(), n_hashes=2, bucket_size=4, seed=0)
    assert torch.equal(
        lsh_attention(qk.double(), v.double(), n_hashes=2, bucket_size=4, seed=0, backend="torch"),
        auto_out,
    )  # float64 on a CPU: auto is the torch path
    torch.testing.assert_close(
        lsh_attention(qk, v, n_hashes=2, bucket_size=4, seed=0), torch_out, rtol=0, atol=1e-5
    )
    layer = LSHSelfAttention(ReformerConfig(d_model=16, n_heads=2, bucket_size=4, backend="triton"))
    with pytest.raises(ValueError, match="backend"):
        layer(torch.randn(1, 16, 16))


needs_triton = pytest.mark.skipif(not triton_installed(), reason="triton is not installed")


@needs_triton
def test_auto_falls_back_to_torch_with_one_warning_without_a_c_compiler(monkeypatch, fresh_probe):
    """Triton imports, but cannot build its launchers: auto must not pick it (every call
    would fail), must say why once, and must report torch, the backend that runs."""
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setattr(dispatch.shutil, "which", lambda name: None)
    with pytest.warns(RuntimeWarning, match="C compiler") as caught:
        assert resolve_backend("auto", "cuda", torch.bfloat16, 64, 64) == "torch"
        assert resolve_backend("auto", "cuda", torch.float32, 32, 64) == "torch"
    assert len(caught) == 1
    with pytest.raises(ValueError, match="backend='triton' cannot run.*C compiler"):
        resolve_backend("triton", "cuda", torch.bfloat16, 64, 64)


@needs_triton
def test_auto_falls_back_to_torch_without_python_headers(monkeypatch, tmp_path, fresh_probe):
    real = dispatch.sysconfig.get_paths
    monkeypatch.setattr(
        dispatch.sysconfig, "get_paths", lambda **kw: {**real(**kw), "include": str(tmp_path)}
    )
    with pytest.warns(RuntimeWarning, match="Python.h"):
        assert resolve_backend("auto", "cuda", torch.bfloat16, 64, 64) == "torch"


@needs_triton
def test_the_probe_runs_once_and_a_failed_launch_means_torch(monkeypatch, fresh_probe):
    """With CUDA present the probe launches a kernel once per process; a failure there
    (a driver Triton cannot use, say) sends auto to torch."""
    import reformer.lsh.triton.probe as probe

    launches = []

    def failing_launch():
        launches.append(1)
        raise RuntimeError("cuLaunchKernel failed")

    monkeypatch.setattr(dispatch, "_launcher_prerequisites", lambda: None)
    monkeypatch.setattr(dispatch.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(probe, "probe_launch", failing_launch)
    with pytest.warns(RuntimeWarning, match="probe kernel failed"):
        for _ in range(3):
            assert resolve_backend("auto", "cuda", torch.bfloat16, 64, 64) == "torch"
    assert launches == [1]


@needs_triton
def test_auto_on_cuda_takes_triton_where_the_probe_passes(monkeypatch, fresh_probe):
    monkeypatch.setattr(dispatch, "_launcher_prerequisites", lambda: None)
    monkeypatch.setattr(dispatch.torch.cuda, "is_available", lambda: False)
    assert resolve_backend("auto", "cuda", torch.bfloat16, 64, 64) == "triton"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@needs_triton
def test_the_probe_passes_on_this_gpu():
    """On a GPU machine (the GPU check's test stage) the real probe must pass: the suites'
    CUDA rows would otherwise silently measure the torch path."""
    assert triton_runnable() is None
