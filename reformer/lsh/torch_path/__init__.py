"""Memory-frugal LSH attention kernel: a custom autograd Function (Reformer sec. 2).

Given hash buckets, positions are sorted by (bucket, position) per round, all rounds laid
end to end as one sequence of n_hashes·L slots, cut into chunks of ``bucket_size``; each
chunk attends to itself and to the previous chunk, wrapping around the whole flattened
sequence. Rounds are combined by log-sum-exp, which makes the result one softmax over
every (round, key) occurrence a query saw; the duplicate correction divides each
occurrence's weight by its count, so a key seen in several windows weighs once.

Unlike the peers, which keep every round's (L, 2c) chunk scores for backward, this
Function saves only qk, v, the sort permutation, key_valid, the output and each
position's log-sum-exp over all its rounds, kept as two halves (the row maximum and the
log of the row sum, see ``LSHAttentionFunction``), and recomputes chunk scores block by
block in backward, as FlashAttention does.
Work is done in slices of (head group, round, block of chunks) whose number of logits is
bounded by ``Layout.slice_elements`` (an argument of ``lsh_attention``), so transient memory
does not grow with L, while short sequences still run as a few large batched ops.

The CPU cost of this path is the number of passes over a slice's (c, 2c) logits, so every
mask is one float bias added by the logits' own matmul (``baddbmm``): causal and padding
masks, and the duplicate correction, done by keeping exactly one occurrence of each key
a query sees (the one in the earliest round; see ``slices._mask_seen_before``) instead of
dividing every occurrence's weight by its count. Both give the same softmax over the union of keys.
"""

from reformer.lsh.torch_path.function import LSHAttentionFunction

__all__ = ["LSHAttentionFunction"]
