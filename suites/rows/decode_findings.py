"""What a decode run answers, in words: said once for the suite's summary and the report.

From per-token median latencies {context: ms} of the LSH cache, the KV cache and HF's
Reformer: LSH flatness (longest context over 4K), LSH against the KV cache at the longest
context, where the two cross (log-log interpolation, suites.rows.crossover), and HF's time over
ours at each shared context.
"""

from __future__ import annotations

from suites.rows.crossover import crossovers_between

FLATNESS_FROM = 4096


def decode_findings(lsh: dict[int, float], kv: dict[int, float], hf: dict[int, float]) -> list[str]:
    lines = []
    longest = max(lsh) if lsh else None
    if longest and FLATNESS_FROM in lsh and longest > FLATNESS_FROM:
        lines.append(
            f"LSH per token, {longest} / {FLATNESS_FROM} context: "
            f"{lsh[longest] / lsh[FLATNESS_FROM]:.2f}x"
        )
    if longest and longest in kv:
        lines.append(f"LSH / KV cache per token at {longest}: {lsh[longest] / kv[longest]:.2f}x")
    if lsh and kv:
        lines += [
            f"LSH and KV cache cross at context {c.seq_len:.0f}; "
            f"{'LSH' if c.lower_after == 'a' else 'KV cache'} is faster above"
            for c in crossovers_between(lsh, kv)
        ] or ["LSH and KV cache do not cross in this grid"]
    lines += [
        f"HF Reformer / ours per token at {n}: {hf[n] / lsh[n]:.1f}x"
        for n in sorted(set(lsh) & set(hf))
    ]
    return lines
