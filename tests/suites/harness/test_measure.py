"""The instrument: peak memory, bytes saved for backward, oom mapping, steps and peers."""

from __future__ import annotations

import errno
import time

import pytest
import torch

from baselines import peers
from reformer.config import ReformerConfig
from suites.harness.isolation import is_oom, run_point
from suites.harness.measure import counted_step, peak_memory, time_step
from suites.harness.spec import Workload
from suites.harness.steps import Step, build_step
from suites.rows.samples import MIN_SAMPLES

MIB = 2**20
BUFFER_MIB = 256


def _touch_buffer() -> float:
    buffer = torch.ones(BUFFER_MIB * MIB // 4)  # allocated and written: resident
    return float(buffer[-1])


def _clear_refs_works() -> bool:
    try:
        peak_memory(lambda: None, "cpu", method="clear_refs")
    except (RuntimeError, OSError, KeyError):
        return False
    return True


@pytest.mark.skipif(not _clear_refs_works(), reason="/proc/self/clear_refs not allowed here")
def test_a_256_mib_buffer_measures_256_mib_with_clear_refs():
    memory, result = peak_memory(_touch_buffer, "cpu", method="clear_refs")
    assert result == 1.0 and memory["memory_method"] == "vmhwm_clear_refs"
    assert memory["peak_mib"] == pytest.approx(BUFFER_MIB, rel=0.15)


def test_a_256_mib_buffer_measures_256_mib_with_psutil_sampling():
    memory, _ = peak_memory(_touch_buffer, "cpu", method="psutil")
    assert memory["memory_method"] == "psutil_sampling"
    assert memory["peak_mib"] == pytest.approx(BUFFER_MIB, rel=0.15)


def test_memory_freed_before_the_pass_does_not_hide_the_peak():
    """Freed heap would otherwise be reused inside the measured call, under the baseline."""
    _touch_buffer()
    memory, _ = peak_memory(_touch_buffer, "cpu")
    assert memory["peak_mib"] == pytest.approx(BUFFER_MIB, rel=0.15)


def test_saved_bytes_of_a_known_graph_match_a_hand_count():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 128, generator=generator, requires_grad=True)
    weight = torch.randn(128, 256, generator=generator, requires_grad=True)

    def forward():
        hidden = x @ weight  # mm saves x (64·128) and weight (128·256)
        return torch.relu(hidden).sum()  # relu saves its output (64·256); sum saves nothing

    def finish(loss):
        loss.backward()
        with torch.enable_grad():  # work done after the forward (a recompute) is not counted
            (x * 2).exp().sum().backward()

    step = Step(forward, finish, [x, weight], tokens=64)
    saved, flops = counted_step(step, count_flops=True)
    assert saved == 4 * (64 * 128 + 128 * 256 + 64 * 256)
    assert flops == 3 * 2 * 64 * 128 * 256  # mm forward + two mm in backward
    assert x.grad is not None


LAYER = ReformerConfig(attention="sdpa", d_model=16, n_heads=2, max_seq_len=32)


def _layer_step(model="attn-sdpa", config=LAYER, **workload):
    return build_step(
        model, config, Workload(**{"phase": "fwd_bwd", "batch": 2, "seq_len": 32} | workload)
    )


def test_steps_reset_gradients_every_call_and_fwd_saves_nothing():
    step = _layer_step()
    step()
    first = [t.grad.clone() for t in step.grad_tensors]
    step()
    assert all(torch.equal(a, t.grad) for a, t in zip(first, step.grad_tensors, strict=True))
    inference = _layer_step(phase="fwd")
    assert counted_step(inference, count_flops=False)[0] == 0


def test_time_step_reports_median_iqr_and_samples():
    timing = time_step(_layer_step(), min_run_time=0.05)
    assert timing["t_median_ms"] > 0 and timing["t_iqr_ms"] >= 0 and timing["n_samples"] >= 1


def test_time_step_takes_at_least_min_samples_calls_when_the_budget_gives_fewer():
    calls = []

    def slow_step() -> None:  # a step slower than the budget: autorange alone takes one
        calls.append(None)
        time.sleep(0.02)

    timing = time_step(slow_step, min_run_time=0.0, min_samples=MIN_SAMPLES)
    assert timing["n_samples"] >= MIN_SAMPLES
    assert timing["t_median_ms"] >= 20
    assert time_step(slow_step, min_run_time=0.0, min_samples=1)["n_samples"] >= 1


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"model": "nope-lsh"}, "model="),
        ({"phase": "backward"}, "phase="),
        ({"phase": "train_step"}, "allowed phases"),
        ({"dtype": "float8"}, "dtype="),
        ({"batch": 0}, "batch="),
    ],
)
def test_bad_points_raise_errors_naming_the_field(changes, field):
    with pytest.raises(ValueError, match=field):
        _layer_step(**changes)


def test_oom_mapping():
    assert is_oom(MemoryError())
    assert is_oom(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to"))
    assert is_oom(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_oom(OSError(errno.ENOMEM, "Cannot allocate memory"))
    assert not is_oom(ValueError("out of memory"))
    assert not is_oom(RuntimeError("shape mismatch"))


def test_rlimit_cap_turns_an_oversized_allocation_into_oom():
    params = {"seq_len": 1024, "model": "x", "device": "cpu"}
    result = run_point(
        "tests.suites.tiny:alloc_runner", params, {}, timeout_s=60, max_memory_gb=0.25
    )
    assert result["status"] == "oom" and "allocate" in result["error"]
    result = run_point(
        "tests.suites.tiny:alloc_runner",
        params | {"seq_len": 64},
        {},
        timeout_s=60,
        max_memory_gb=0.25,
    )
    assert result["status"] == "ok" and result["peak_mib"] == 64


def test_missing_peer_raises_with_the_install_hint(monkeypatch):
    monkeypatch.setattr(peers, "peer_available", lambda model: False)
    with pytest.raises(peers.PeerMissing, match=r"pip install '\.\[peers\]'"):
        peers.build_peer("peer-hf", None, 64)
    with pytest.raises(ValueError, match="allowed"):
        peers.peer_version("peer-nope")


@pytest.mark.parametrize("model", sorted(peers.PEER_PACKAGES))
def test_installed_peers_run_on_our_shapes(model):
    if not peers.peer_available(model):
        pytest.skip(peers.missing_note(model))
    config = LAYER.replace(attention="lsh", n_hashes=2, bucket_size=8, max_seq_len=64)
    step = _layer_step(model, config, seq_len=64)
    step()
    assert step.info["impl_version"] and step.info["n_buckets"] >= 2
    assert all(t.grad is not None for t in step.grad_tensors[-1:])  # input gradient
