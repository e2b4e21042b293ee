"""HF transformers' Reformer decoding, matched to our config, for the decode suite.

``ReformerModelWithLMHead`` with LSH attention in every layer, is_decoder, the same width,
heads, FF width, hash rounds, chunk length and bucket count (ours at the generation's
length), learned positions, no dropout. Tokens are fed one at a time with its bucket cache
(``past_buckets_states``), the loop HF's ``generate`` runs, so each token is timed. Each
step concatenates the cached past and sorts every bucket again (HF's design), so a token
costs time linear in the context: the decoder runs at every context length of the grid
and stops a point whose token (warm-up tokens included) takes longer than
:data:`TOKEN_LIMIT_S`, raising :class:`~suites.harness.isolation.TooSlow`: the row is
``timeout`` with the limit named, and the longer contexts skip.
"""

from __future__ import annotations

import time
from typing import Any

from suites.harness.isolation import TooSlow

# Seconds one generated token may take. At 16K context HF's step took about 0.16 s on a
# 2-core CPU and grows linearly with context, so 64K fits with room; at the limit a point
# of 68 tokens is still under three minutes.
TOKEN_LIMIT_S = 2.0


def hf_decoder(
    config: Any, device: str, dtype: Any, warmup_tokens: int, token_limit_s: float = TOKEN_LIMIT_S
):
    """A decode(prompt, new_tokens) -> (prefill s, per-token s, None) for HF's Reformer,
    after ``warmup_tokens`` untimed steps; raises TooSlow once a token takes longer than
    ``token_limit_s``."""
    import torch
    from transformers import ReformerConfig as HFReformerConfig
    from transformers import ReformerModelWithLMHead

    from reformer.lsh.hashing import resolve_n_buckets

    factors = resolve_n_buckets(config.n_buckets, config.max_seq_len, config.bucket_size)
    hf_config = HFReformerConfig(
        vocab_size=config.vocab_size,
        hidden_size=config.d_model,
        num_attention_heads=config.n_heads,
        attention_head_size=config.d_head,
        attn_layers=["lsh"] * config.n_layers,
        feed_forward_size=config.d_ff,
        num_hashes=config.n_hashes,
        lsh_attn_chunk_length=config.bucket_size,
        lsh_num_chunks_before=1,
        lsh_num_chunks_after=0,
        num_buckets=list(factors) if len(factors) > 1 else factors[0],
        is_decoder=True,
        axial_pos_embds=False,
        max_position_embeddings=config.max_seq_len,
        hidden_dropout_prob=0.0,
        lsh_attention_probs_dropout_prob=0.0,
        pad_token_id=0,
        eos_token_id=None,
    )
    # Any: transformers types .to() through a wrapper mypy cannot call.
    model: Any = ReformerModelWithLMHead(hf_config)
    model = model.to(device=device, dtype=dtype).train(False)

    def decode(prompt, new_tokens: int):
        with torch.no_grad():
            start = time.perf_counter()
            out = model(input_ids=prompt, use_cache=True)
            token = out.logits[:, -1].argmax(-1)
            prefill = time.perf_counter() - start
            past, times = out.past_buckets_states, []
            for index in range(warmup_tokens + new_tokens):
                start = time.perf_counter()
                out = model(input_ids=token[:, None], past_buckets_states=past, use_cache=True)
                past, token = out.past_buckets_states, out.logits[:, -1].argmax(-1)
                took = time.perf_counter() - start
                if took > token_limit_s:
                    raise TooSlow(
                        f"HF's token {index + 1} at context {prompt.shape[1]} took "
                        f"{took:.2f} s, over the decode suite's limit of {token_limit_s:g} s "
                        "a token (suites.decode.hf.TOKEN_LIMIT_S)"
                    )
                if index >= warmup_tokens:
                    times.append(took)
        return prefill, times, None

    return decode
