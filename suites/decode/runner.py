"""Measure generation at one context length, in the point's child process.

Prefill (time to first token: the prompt's forward, filling the caches, and the first
sample) is timed once, after an untimed run on a short prompt has paid the one-off costs;
then ``new_tokens`` greedy steps are timed one by one after a few
untimed warm-up steps, giving the per-step median and p90 (a step gives each of the
batch's sequences its next token: ``tokens_per_s_per_seq`` is one over the median,
``tokens_per_s`` that times the batch). Peak memory is taken over
prefill and decoding together, above what the built model holds. How each model decodes
(the ``cache`` field):

- ``lsh``: ReformerLM with the LSH decoding cache (reformer.decode);
- ``kv``: the Transformer baseline with a key/value cache;
- ``none``: the Transformer baseline recomputing the whole context for every token;
- ``hf``: HF transformers' ReformerModelWithLMHead with its bucket cache
  (``past_buckets_states``), same shape, when installed.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from suites.harness.measure import peak_memory

WARMUP_TOKENS = 4
WARM_PROMPT = 128  # tokens of the untimed run before prefill: two default chunks
CACHES = ("lsh", "kv", "none", "hf")


def measure_decode(params: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    import torch

    config, workload = options["config"], options["workload"]
    if workload.num_threads:
        torch.set_num_threads(workload.num_threads)
    torch.manual_seed(config.seed)
    cache, new_tokens = params["cache"], int(params["new_tokens"])
    decoder, info = _decoder(params["model"], cache, config, workload)
    prompt = torch.randint(0, config.vocab_size, (workload.batch, workload.seq_len))
    prompt = prompt.to(workload.device)
    # One-off costs (the CPU kernel's build or load, thread pools, torch's lazy set-up) are
    # paid here, on a short prompt, so the timed prefill is the first token's own time.
    decoder(prompt[:, :WARM_PROMPT], 1)
    memory, (prefill_s, per_token_s, cache_bytes) = peak_memory(
        lambda: decoder(prompt, new_tokens), workload.device
    )
    ordered = sorted(per_token_s)
    median = statistics.median(ordered)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return {
        "num_threads": torch.get_num_threads(),
        "t_median_ms": median * 1e3,
        "t_p90_ms": p90 * 1e3,
        "t_iqr_ms": (ordered[(3 * len(ordered)) // 4] - ordered[len(ordered) // 4]) * 1e3,
        "n_samples": len(ordered),
        "prefill_ms": prefill_s * 1e3,
        "tokens_per_s": workload.batch / median,  # the whole batch's
        "tokens_per_s_per_seq": 1 / median,
        "cache_bytes_per_token": cache_bytes,
        **info,
        **memory,
    }


def _decoder(model_name: str, cache: str, config, workload):
    """(decode(prompt, new_tokens) -> (prefill s, per-token s, cache bytes per position),
    row fields naming the implementation)."""
    import torch

    if cache not in CACHES:
        raise ValueError(f"cache={cache!r} is unknown; allowed: {CACHES}")
    dtype = getattr(torch, workload.dtype)
    if cache == "hf":
        from baselines.peers import peer_version
        from suites.decode.hf import hf_decoder

        info = {"impl": "transformers", "impl_version": peer_version("peer-hf")}
        return hf_decoder(config, workload.device, dtype, WARMUP_TOKENS), info

    from baselines import TransformerLM
    from reformer import ReformerLM
    from reformer.generate import sample

    model = (ReformerLM if model_name.startswith("reformer") else TransformerLM)(config)
    model = model.to(device=workload.device, dtype=dtype).train(False)

    def decode(prompt, new_tokens: int):
        with torch.no_grad():
            total = prompt.shape[1] + WARMUP_TOKENS + new_tokens
            start = time.perf_counter()
            if cache == "none":
                tokens = prompt
                logits = model(tokens)[:, -1]
            else:
                caches = model.new_caches(prompt.shape[0], total, next(model.parameters()))
                logits = model.decode(prompt, caches)
            token = sample(logits, 0.0, None, None)
            prefill = time.perf_counter() - start
            times = []
            for index in range(WARMUP_TOKENS + new_tokens):
                start = time.perf_counter()
                if cache == "none":
                    tokens = torch.cat([tokens, token[:, None]], dim=1)
                    logits = model(tokens)[:, -1]
                else:
                    logits = model.decode(token[:, None], caches)
                token = sample(logits, 0.0, None, None)
                if index >= WARMUP_TOKENS:
                    times.append(time.perf_counter() - start)
            # Bytes per position the caches were sized for (all layers, whole batch).
            held = None if cache == "none" else sum(c.nbytes() for c in caches) / total
        return prefill, times, held

    return decode, {"impl": "reformer-bench"}
