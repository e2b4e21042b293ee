"""decode: what one generated token costs against context length, and time to first token.

The default model (6 layers, d_model 256, LSH-4, chunk 64), greedy, for each context
length and batch (1, and 8 prompts decoding together): the prompt's prefill (time to
first token), then per-step latency (median and p90 over ``new_tokens`` steps after 4
untimed ones; a step gives every sequence of the batch its next token), tokens/s per
sequence and in total, the caches' bytes per position and the peak memory of prefill and
decoding together. Decoders (the ``cache`` field, suites.decode.runner):

- ``reformer-lsh-rev`` with the LSH decoding cache: a token costs O(n_hashes · chunk);
- ``transformer-sdpa`` with a key/value cache: a token reads the whole context;
- ``transformer-sdpa`` with no cache: the whole context recomputed per token (short
  contexts only: at 4K on a 2-core CPU that is already a second a token);
- ``peer-hf``: HF transformers' Reformer with its bucket cache, when installed, at every
  context length: each of its steps sorts the whole cached past, so a token costs time
  linear in the context; a point whose token takes over ``suites.decode.hf.TOKEN_LIMIT_S``
  stops as ``timeout`` and the longer contexts skip.

CPU default: 1K to 64K; ``--paper`` to 256K; CUDA: 4K to 1M. Batch 8 runs the two
caches (LSH and KV) only, up to 16K on a CPU (64K with ``--paper``; 256K on CUDA, where a
KV cache of 8 x 256K positions already holds 24 GiB): eight prompts' prefill is eight
times one's, and the no-cache and HF decoders are batch-1 baselines.
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
BATCHES = (1, 8)
BATCHED_CACHES = ("lsh", "kv")  # the decoders that run at every batch


def _shape(ctx: GridContext) -> tuple[list[int], int, int, int]:
    """(context lengths, new tokens, longest no-cache context, longest context of a batch
    above 1). HF's decoder runs at every length, up to its per-token limit."""
    if ctx.mode == "quick":
        return [64, 128, 256], 16, 256, 256
    if ctx.device == "cuda":
        return powers_of_two(2**12, 2**20), 64, 2**14, 2**18
    if ctx.mode == "paper":
        return powers_of_two(2**10, 2**18), 64, 2**12, 2**16
    return powers_of_two(2**10, 2**16), 64, 2**12, 2**14


def grid(ctx: GridContext) -> list[Point]:
    lengths, new_tokens, no_cache_max, batched_max = _shape(ctx)
    model = preset(ctx)
    points = []
    for length, batch in ((n, b) for b in BATCHES for n in lengths):
        if batch > 1 and length > batched_max:
            continue
        capacity = length + WARMUP_TOKENS + new_tokens
        # On CUDA the prefill's LSH names its backend (the steps run reformer.decode).
        lsh = device_backend(model.replace(attention="lsh"), ctx.device)
        decoders = [("reformer", lsh, "lsh")]
        decoders.append(("transformer", model.replace(attention="sdpa"), "kv"))
        if length <= no_cache_max:
            decoders.append(("transformer", model.replace(attention="sdpa"), "none"))
        decoders.append(("reformer", model.replace(attention="lsh"), "hf"))
        if batch > 1:
            decoders = [d for d in decoders if d[2] in BATCHED_CACHES]
        for family, config, cache in decoders:
            point = lm_point(ctx, family, config, seq_len=length, phase="decode", batch=batch)
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
    found: dict[tuple[int, int, str], dict[str, Any]] = {}
    for row in ok:
        found[(int(row["seq_len"]), batch_of(row), str(row.get("cache")))] = row
    lines = [
        "per-step latency (median / p90 ms; a step gives each sequence one token), time to "
        "first token, tokens/s per sequence and in total, cache bytes per position:",
        "",
        "| context | batch | decoder | per step (ms) | p90 (ms) | prefill (ms) | "
        "tokens/s per seq | tokens/s total | cache B/pos | peak (MiB) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key in sorted(found):
        row = found[key]
        per_pos = row.get("cache_bytes_per_token")
        lines.append(
            f"| {key[0]} | {key[1]} | {decoder_label(row)} | {row['t_median_ms']:.2f} | "
            f"{row['t_p90_ms']:.2f} | {row['prefill_ms']:.0f} | "
            f"{tokens_per_s_per_seq(row):.1f} | {row['tokens_per_s']:.1f} | "
            f"{'-' if per_pos is None else f'{per_pos:.0f}'} | {row['peak_mib']:.0f} |"
        )
    by_cache: dict[str, dict[int, dict[str, Any]]] = {}
    for (length, batch, cache), row in found.items():
        if batch == 1:  # the findings compare decoders one sequence at a time
            by_cache.setdefault(cache, {})[length] = row
    lines += ["", *target_lines(by_cache), *batch_lines(found)]
    return lines


def batch_of(row: dict[str, Any]) -> int:
    return int(row.get("batch") or 1)


def tokens_per_s_per_seq(row: dict[str, Any]) -> float:
    """Tokens/s each sequence gets; rows from before the field: the total over the batch."""
    value = row.get("tokens_per_s_per_seq")
    return float(row["tokens_per_s"]) / batch_of(row) if value is None else float(value)


def batch_lines(found: dict[tuple[int, int, str], dict[str, Any]]) -> list[str]:
    """Per cache, at the longest context run at both batch 1 and a larger batch: the total
    tokens/s of the batch over batch 1's, and what each sequence keeps of its speed."""
    lines = []
    for cache in BATCHED_CACHES:
        pairs = [
            (length, batch)
            for (length, batch, name) in found
            if name == cache and batch > 1 and (length, 1, cache) in found
        ]
        if not pairs:
            continue
        length, batch = max(pairs)
        one, many = found[(length, 1, cache)], found[(length, batch, cache)]
        lines.append(
            f"{DECODER_NAMES[cache]}, batch {batch} / batch 1 at {length}: total tokens/s "
            f"{many['tokens_per_s'] / one['tokens_per_s']:.2f}x, per sequence "
            f"{tokens_per_s_per_seq(many) / tokens_per_s_per_seq(one):.2f}x"
        )
    return lines


DECODER_NAMES = {
    "lsh": "Reformer, LSH cache",
    "kv": "Transformer, KV cache",
    "none": "Transformer, no cache",
    "hf": "HF Reformer, bucket cache",
}


def decoder_label(row: dict[str, Any]) -> str:
    return DECODER_NAMES.get(str(row.get("cache")), str(row.get("model")))


def target_lines(by_cache: dict[str, dict[int, dict[str, Any]]]) -> list[str]:
    lsh, kv, hf = (
        {n: r["t_median_ms"] for n, r in by_cache.get(c, {}).items()} for c in ("lsh", "kv", "hf")
    )
    return decode_findings(lsh, kv, hf)


SUITE = Suite(
    name="decode",
    description="generation: per-token latency and memory vs context, batch 1 and 8",
    grid=grid,
    summarize=summarize,
)
