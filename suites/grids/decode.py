"""decode: what one generated token costs against context length, and time to first token.

The default model (6 layers, d_model 256, LSH-4, chunk 64), batch 1, greedy, for each
context length: the prompt's prefill (time to first token), then per-token latency
(median and p90 over ``new_tokens`` tokens after 4 untimed ones), tokens/s, the caches'
bytes per position and the peak memory of prefill and decoding together. Decoders (the
``cache`` field, suites.decode.runner):

- ``reformer-lsh-rev`` with the LSH decoding cache: a token costs O(n_hashes · chunk);
- ``transformer-sdpa`` with a key/value cache: a token reads the whole context;
- ``transformer-sdpa`` with no cache: the whole context recomputed per token (short
  contexts only: at 4K on a 2-core CPU that is already a second a token);
- ``peer-hf``: HF transformers' Reformer with its bucket cache, when installed (up to 16K
  on CPU: each of its steps sorts the whole cached past).

CPU default: 1K to 64K; ``--paper`` to 256K; CUDA: 4K to 1M.
"""

from __future__ import annotations

from typing import Any

from baselines.peers import missing_note, peer_available
from suites.decode.runner import WARMUP_TOKENS
from suites.grids._common import lm_point, ok_rows, powers_of_two, preset
from suites.harness.backend import device_backend
from suites.harness.points import Point
from suites.harness.suite import GridContext, Suite
from suites.rows.decode_findings import decode_findings

RUNNER = "suites.decode.runner:measure_decode"
HF = "peer-hf"


def _shape(ctx: GridContext) -> tuple[list[int], int, int, int]:
    """(context lengths, new tokens, longest no-cache context, longest HF context)."""
    if ctx.mode == "quick":
        return [64, 128, 256], 16, 256, 256
    if ctx.device == "cuda":
        return powers_of_two(2**12, 2**20), 64, 2**14, 2**16
    high = 2**18 if ctx.mode == "paper" else 2**16
    return powers_of_two(2**10, high), 64, 2**12, 2**14


def grid(ctx: GridContext) -> list[Point]:
    lengths, new_tokens, no_cache_max, hf_max = _shape(ctx)
    model = preset(ctx)
    points = []
    for length in lengths:
        capacity = length + WARMUP_TOKENS + new_tokens
        # On CUDA the prefill's LSH names its backend (the steps run reformer.decode).
        lsh = device_backend(model.replace(attention="lsh"), ctx.device)
        decoders = [("reformer", lsh, "lsh")]
        decoders.append(("transformer", model.replace(attention="sdpa"), "kv"))
        if length <= no_cache_max:
            decoders.append(("transformer", model.replace(attention="sdpa"), "none"))
        if length <= hf_max:
            decoders.append(("reformer", model.replace(attention="lsh"), "hf"))
        for family, config, cache in decoders:
            point = lm_point(ctx, family, config, seq_len=length, phase="decode")
            point.config = point.config.replace(max_seq_len=capacity) if point.config else None
            point.params |= {"cache": cache, "new_tokens": new_tokens}
            point.runner = RUNNER
            if cache == "hf":
                point.params["model"] = HF
                if not peer_available(HF):
                    point.options["skip_reason"] = missing_note(HF)
            points.append(point)
    return points


def summarize(rows: list[dict[str, Any]], ctx: GridContext) -> list[str]:
    ok = ok_rows(rows)
    by_cache: dict[str, dict[int, dict[str, Any]]] = {}
    for row in ok:
        by_cache.setdefault(str(row.get("cache")), {})[int(row["seq_len"])] = row
    lines = [
        "per-token latency (median / p90 ms), time to first token, cache bytes per position:",
        "",
        "| context | decoder | per token (ms) | p90 (ms) | prefill (ms) | tokens/s | "
        "cache B/pos | peak (MiB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for length in sorted({int(r["seq_len"]) for r in ok}):
        for found in by_cache.values():
            if length not in found:
                continue
            row = found[length]
            per_pos = row.get("cache_bytes_per_token")
            lines.append(
                f"| {length} | {decoder_label(row)} | {row['t_median_ms']:.2f} | "
                f"{row['t_p90_ms']:.2f} | {row['prefill_ms']:.0f} | {row['tokens_per_s']:.1f} | "
                f"{'-' if per_pos is None else f'{per_pos:.0f}'} | {row['peak_mib']:.0f} |"
            )
    lines += ["", *target_lines(by_cache)]
    return lines


def decoder_label(row: dict[str, Any]) -> str:
    return {
        "lsh": "Reformer, LSH cache",
        "kv": "Transformer, KV cache",
        "none": "Transformer, no cache",
        "hf": "HF Reformer, bucket cache",
    }.get(str(row.get("cache")), str(row.get("model")))


def target_lines(by_cache: dict[str, dict[int, dict[str, Any]]]) -> list[str]:
    lsh, kv, hf = (
        {n: r["t_median_ms"] for n, r in by_cache.get(c, {}).items()} for c in ("lsh", "kv", "hf")
    )
    return decode_findings(lsh, kv, hf)


SUITE = Suite(
    name="decode",
    description="generation: per-token latency and memory vs context",
    grid=grid,
    summarize=summarize,
)
