"""The decode suite: its runner's rows for every decoder and batch, its grid's batch axis,
and its summary's targets."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from baselines.peers import peer_available
from suites.grids.decode import grid, summarize
from suites.harness.suite import GridContext
from tests.suites.grids.fixtures.grid_keys import HARDWARE

CTX = GridContext(device="cpu", mode="quick")
# The keys of the grid's points before it had a batch axis (all batch 1).
BATCH_1_KEYS = Path(__file__).parents[1] / "grids" / "fixtures" / "decode_batch1_keys.json"


def _point(model: str, cache: str, batch: int = 1):
    return next(
        p
        for p in grid(CTX)
        if p.params["cache"] == cache
        and p.seq_len == 64
        and p.params["model"] == model
        and p.params["batch"] == batch
    )


@pytest.mark.parametrize(
    ("model", "cache"),
    [
        ("reformer-lsh-rev", "lsh"),
        ("transformer-sdpa", "kv"),
        ("transformer-sdpa", "none"),
        ("peer-hf", "hf"),
    ],
)
def test_runner_times_every_token_and_reports_the_cache(model, cache):
    from suites.decode.runner import measure_decode

    point = _point(model, cache)
    if cache == "hf" and not peer_available("peer-hf"):
        assert "not installed" in point.options["skip_reason"]
        pytest.skip("transformers is not installed (the [peers] extra)")
    row = measure_decode(point.params, point.runner_options())
    assert row["n_samples"] == point.params["new_tokens"] == 16
    assert 0 < row["t_median_ms"] <= row["t_p90_ms"]
    assert row["prefill_ms"] > 0 and row["tokens_per_s"] > 0
    if cache in ("lsh", "kv"):
        assert row["cache_bytes_per_token"] > 0
    else:
        assert row["cache_bytes_per_token"] is None


def test_hf_runs_at_every_context_length_of_the_default_grid():
    for device in ("cpu", "cuda"):
        points = grid(GridContext(device=device, mode="default"))
        lengths = {p.seq_len for p in points if p.params["batch"] == 1}
        hf = {p.seq_len for p in points if p.params["cache"] == "hf"}
        assert hf == lengths and max(hf) >= 2**16


def test_hf_stops_a_point_whose_token_is_over_the_limit():
    from suites.decode.hf import hf_decoder
    from suites.harness.isolation import TooSlow

    if not peer_available("peer-hf"):
        pytest.skip("transformers is not installed (the [peers] extra)")
    import torch

    point = _point("peer-hf", "hf")
    config = point.runner_options()["config"]
    decode = hf_decoder(config, "cpu", torch.float32, warmup_tokens=2, token_limit_s=0.0)
    prompt = torch.randint(0, config.vocab_size, (1, 64))
    with pytest.raises(TooSlow, match="token 1 at context 64 took .* limit of 0 s"):
        decode(prompt, 4)
    decode = hf_decoder(config, "cpu", torch.float32, warmup_tokens=2, token_limit_s=60.0)
    _, times, _ = decode(prompt, 4)
    assert len(times) == 4


def test_a_batch_of_8_reports_tokens_per_second_per_sequence_and_in_total():
    from suites.decode.runner import measure_decode

    point = _point("reformer-lsh-rev", "lsh", batch=8)
    row = measure_decode(point.params, point.runner_options())
    assert row["tokens_per_s_per_seq"] == pytest.approx(1e3 / row["t_median_ms"])
    assert row["tokens_per_s"] == pytest.approx(8 * row["tokens_per_s_per_seq"])


@pytest.mark.parametrize("mode", ["quick", "default", "paper"])
@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_the_grid_has_a_batch_axis_for_both_caches_and_keeps_its_batch_1_keys(mode, device):
    points = grid(GridContext(device=device, mode=mode))
    batches: dict[tuple[str, int], set[int]] = {}
    for point in points:
        batches.setdefault((point.params["cache"], point.seq_len), set()).add(point.params["batch"])
    for cache in ("lsh", "kv"):
        assert {1, 8} in [b for (c, _), b in batches.items() if c == cache]
    assert all(b == {1} for (c, _), b in batches.items() if c in ("none", "hf"))
    longest = {
        b: max(n for (c, n), found in batches.items() if b in found and c == "kv") for b in (1, 8)
    }
    assert longest[8] <= longest[1]  # a batch of 8 stops at a shorter context, if anywhere
    if device == "cpu":
        # The keys recorded before the batch axis, when HF's decoder stopped at 16K on a
        # CPU (256 in quick mode); its longer contexts are new points.
        hf_max = 256 if mode == "quick" else 2**14
        single = [
            p
            for p in points
            if p.params["batch"] == 1 and not (p.params["cache"] == "hf" and p.seq_len > hf_max)
        ]
        keys = sorted(p.key("decode", HARDWARE) for p in single)
        digest = hashlib.sha256("\n".join(keys).encode()).hexdigest()
        assert digest == json.loads(BATCH_1_KEYS.read_text())[mode]


def test_the_caches_capacity_covers_every_token_fed_back():
    for point in grid(CTX):
        assert point.config.max_seq_len >= point.seq_len + point.params["new_tokens"]


def test_summary_gives_flatness_ratio_crossover_and_hf_ratio():
    def row(cache, length, ms):
        return {
            "status": "ok",
            "cache": cache,
            "model": "m",
            "seq_len": length,
            "t_median_ms": ms,
            "t_p90_ms": ms,
            "prefill_ms": 1.0,
            "tokens_per_s": 1e3 / ms,
            "cache_bytes_per_token": 10.0,
            "peak_mib": 1.0,
        }

    rows = [row("lsh", n, 10.0) for n in (4096, 16384, 65536)]
    rows += [row("kv", 4096, 4.0), row("kv", 16384, 16.0), row("kv", 65536, 64.0)]
    rows += [row("hf", 16384, 200.0)]
    # A batch of 8 at 16K: its own table rows, never mixed into the batch-1 findings.
    batched = [row("lsh", 16384, 20.0), row("kv", 16384, 64.0)]
    for found in batched:
        found |= {"batch": 8, "tokens_per_s": 8e3 / found["t_median_ms"]}
        found["tokens_per_s_per_seq"] = found["tokens_per_s"] / 8
    text = "\n".join(summarize(rows + batched, CTX))
    assert "LSH per token, 65536 / 4096 context: 1.00x" in text
    assert "LSH / KV cache per token at 65536: 0.16x" in text
    assert "LSH and KV cache cross at context 10240; LSH is faster above" in text
    assert "HF Reformer / ours per token at 16384: 20.0x" in text
    assert "Reformer, LSH cache, batch 8 / batch 1 at 16384: total tokens/s 4.00x, " in text
    assert "per sequence 0.50x" in text
    assert "Transformer, KV cache, batch 8 / batch 1 at 16384: total tokens/s 2.00x" in text
    assert "| 16384 | 8 | Reformer, LSH cache | 20.00 |" in text


def test_one_off_costs_are_paid_on_a_short_prompt_before_the_timed_prefill(monkeypatch):
    """Time to first token must not include the kernel's build, thread pools or torch's
    lazy set-up: an untimed short run comes first, outside the measured region."""
    import suites.decode.runner as runner

    events: list[tuple[str, int]] = []

    def fake_decoder(prompt, new_tokens):
        events.append(("decode", prompt.shape[1]))
        return 0.001, [0.001] * new_tokens, None

    def fake_peak_memory(step, device):
        events.append(("measured", 0))
        return {}, step()

    monkeypatch.setattr(runner, "_decoder", lambda *args: (fake_decoder, {}))
    monkeypatch.setattr(runner, "peak_memory", fake_peak_memory)
    point = _point("reformer-lsh-rev", "lsh")
    runner.measure_decode(point.params, point.runner_options())
    short = min(point.seq_len, runner.WARM_PROMPT)
    assert events == [("decode", short), ("measured", 0), ("decode", point.seq_len)]
