"""How big each quality run is, per mode: quick (seconds), default (this CPU), full (GPU).

``quick`` is a smoke run of tiny models (a couple of steps) that exercises every point
and writes every row; its numbers mean nothing.

Duplication task (paper: L = 1024, 1 layer, d_model 256, 4 heads, vocabulary 128). The
default keeps the paper's model and vocabulary and shortens the sequence to L = 128
(w of 63 symbols) with bucket_size 16, so LSH still matters: 2·L/c = 16 buckets and 8
chunks per round, and a query's window (its chunk and the previous one, 32 positions) is
a quarter of the sequence, so the position it must copy from is seen only if hashing puts
it there. Batch 8 and 400 steps: in trial runs (same model, a 600-step schedule) both a
full-attention and an LSH-4 model reached 100% on held-out sequences, evaluated with
their training attention, within 150 steps; at L = 512 (bucket_size 32) a full-attention
model was still at chance after 270 steps, so longer sequences do not fit a CPU budget.
``full`` is the paper's L = 1024 with bucket_size 64 (32 buckets), for a GPU.

Byte LM: a small model (2 layers, d_model 128) on the stdlib corpus, L = 256 with
bucket_size 32 (16 buckets); the Transformer and the Reformers see the same steps,
batches and tokens (300 steps of 4 x 256 bytes: 307K bytes). On this CPU an LSH layer at
these short lengths costs 10-30x an SDPA layer, so the LSH runs set the suite's length;
the sizes are chosen for about 30 minutes in all on an idle 2-core CPU. ``full`` is a
longer run at L = 2048 for a GPU (not the paper's enwik8 model: 12 layers, d_model 1024,
L = 65536).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class RunSize:
    seq_len: int
    bucket_size: int
    d_model: int
    n_heads: int
    n_layers: int
    d_ff: int  # the Transformer's; Reformers get a wider one for equal parameter counts
    batch: int
    steps: int
    lr: float
    warmup_steps: int
    eval_every: int
    eval_size: int  # held-out sequences (duplication) or validation windows (bytes)


@dataclass(frozen=True, kw_only=True)
class ModeSize:
    duplication: RunSize
    bytes: RunSize
    timeout_s: float  # per point: the first point of a run trains it


SIZES: dict[str, ModeSize] = {
    "quick": ModeSize(
        duplication=RunSize(seq_len=16, bucket_size=4, d_model=32, n_heads=2, n_layers=1,
                            d_ff=32, batch=4, steps=2, lr=1e-3, warmup_steps=1,
                            eval_every=2, eval_size=8),
        bytes=RunSize(seq_len=32, bucket_size=8, d_model=32, n_heads=2, n_layers=2,
                      d_ff=32, batch=4, steps=2, lr=1e-3, warmup_steps=1, eval_every=2,
                      eval_size=4),
        timeout_s=300.0,
    ),
    "default": ModeSize(
        duplication=RunSize(seq_len=128, bucket_size=16, d_model=256, n_heads=4, n_layers=1,
                            d_ff=256, batch=8, steps=400, lr=2e-3, warmup_steps=40,
                            eval_every=100, eval_size=256),
        bytes=RunSize(seq_len=256, bucket_size=32, d_model=128, n_heads=4, n_layers=2,
                      d_ff=512, batch=4, steps=300, lr=2e-3, warmup_steps=30,
                      eval_every=50, eval_size=64),
        timeout_s=7200.0,
    ),
    "full": ModeSize(
        duplication=RunSize(seq_len=1024, bucket_size=64, d_model=256, n_heads=4, n_layers=1,
                            d_ff=512, batch=32, steps=20000, lr=1e-3, warmup_steps=1000,
                            eval_every=1000, eval_size=1024),
        bytes=RunSize(seq_len=2048, bucket_size=64, d_model=256, n_heads=4, n_layers=6,
                      d_ff=1024, batch=16, steps=20000, lr=1e-3, warmup_steps=1000,
                      eval_every=1000, eval_size=512),
        timeout_s=6 * 3600.0,
    ),
}
