"""Ours against reformer-pytorch, one LSH self-attention layer fwd+bwd, in alternating
processes: the quick side-by-side behind the README's "Speed on the CPU" ratios.

    python -m suites.tools.alternate [--lengths 2048,16384] [--rounds 2] [--threads 2]

Both layers have d_model 256, 4 heads, LSH-4, chunk 64, causal, batch 1 (the peers suite's
shape). Each measurement is its own process (``--child ours|peer L``), ours then theirs
at each length, for ``--rounds`` rounds, so neither side inherits the other's warm
caches or allocator state and slow drift of the machine hits both. A child runs two
warm-up steps, then the median of 5 steps (3 from 8K tokens), and prints one line. Needs
the ``[peers]`` extra (reformer-pytorch). Times are only comparable on an idle machine:
check ``uptime`` first.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

D_MODEL, HEADS, N_HASHES, BUCKET = 256, 4, 4, 64


def _child(which: str, seq_len: int) -> float:
    import torch

    torch.manual_seed(0)
    if which == "peer":
        from reformer_pytorch import LSHSelfAttention as PeerLayer

        layer = PeerLayer(
            dim=D_MODEL, heads=HEADS, bucket_size=BUCKET, n_hashes=N_HASHES, causal=True
        )
    else:
        from reformer.config import ReformerConfig
        from reformer.lsh import LSHSelfAttention

        layer = LSHSelfAttention(
            ReformerConfig(d_model=D_MODEL, n_heads=HEADS, n_hashes=N_HASHES, bucket_size=BUCKET)
        )
    x = torch.randn(1, seq_len, D_MODEL, requires_grad=True)

    def step() -> None:
        layer(x).sum().backward()

    step()
    step()
    times = []
    for _ in range(5 if seq_len < 8192 else 3):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2] * 1e3


def _measure(which: str, seq_len: int, threads: int) -> float:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "suites.tools.alternate",
            "--threads",
            str(threads),
            "--child",
            which,
            str(seq_len),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"{which} at L={seq_len} failed:\n{done.stderr[-2000:]}")
    return float(done.stdout.split()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m suites.tools.alternate", description=__doc__)
    parser.add_argument("--lengths", default="2048,16384", help="comma-separated lengths")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of ours, theirs")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads per child")
    parser.add_argument("--child", nargs=2, metavar=("WHICH", "L"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        import torch

        torch.set_num_threads(args.threads)
        print(f"{_child(args.child[0], int(args.child[1])):.1f}")
        return 0
    try:
        import reformer_pytorch  # noqa: F401
    except ImportError:
        print("needs reformer-pytorch: pip install -e '.[peers]'", file=sys.stderr)
        return 2
    lengths = [int(x) for x in args.lengths.split(",")]
    print(f"load average at start: {os.getloadavg()[0]:.2f} (1 min)")
    print("| round | L | ours (ms) | reformer-pytorch (ms) | ours / theirs |")
    print("|---|---|---|---|---|")
    for round_ in range(1, args.rounds + 1):
        for seq_len in lengths:
            ours = _measure("ours", seq_len, args.threads)
            theirs = _measure("peer", seq_len, args.threads)
            print(f"| {round_} | {seq_len} | {ours:.1f} | {theirs:.1f} | {ours / theirs:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
