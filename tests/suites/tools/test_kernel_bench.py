"""suites/tools/kernel_bench.py keeps every measurement it took when it is stopped part-way (the
GPU check gives it a time limit, and SIGINT arrives as KeyboardInterrupt)."""

from __future__ import annotations

import json

import pytest

from suites.tools import kernel_bench


def test_an_interrupted_benchmark_keeps_the_rows_it_measured(tmp_path, monkeypatch):
    timings = iter([2.0, 30.0, 1.5])

    def fake_time_call(call, min_run_time):
        try:
            return next(timings)
        except StopIteration:
            raise KeyboardInterrupt from None  # the time limit, part-way through L=512

    monkeypatch.setattr(kernel_bench, "make_call", lambda *args, **kwargs: lambda: None)
    monkeypatch.setattr(kernel_bench, "time_call", fake_time_call)
    out = tmp_path / "bench.json"
    with pytest.raises(KeyboardInterrupt):
        kernel_bench.main(["--device", "cpu", "--lengths", "256,512", "--out", str(out)])
    record = json.loads(out.read_text())
    assert record["times_ms"]["triton"] == {"256": 2.0}
    assert record["times_ms"]["torch"] == {"256": 30.0}
    assert record["times_ms"]["sdpa_flash"] == {"256": 1.5}
    assert record["ratios"]["256"]["torch/triton"] == pytest.approx(15.0)
    assert not list(tmp_path.glob("*.partial"))
