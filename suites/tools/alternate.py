"""Our LSH layer against reformer-pytorch's, or against exact attention through PyTorch's
SDPA, one self-attention layer fwd+bwd, in alternating processes: the quick side-by-side
behind the README's "Speed on the CPU" ratios.

    python -m suites.tools.alternate [--lengths 2048,16384] [--rounds 2] [--threads 2]
    python -m suites.tools.alternate --against sdpa --lengths 1024,4096 --rounds 6

Every layer has d_model 256, 4 heads, causal, batch 1 (the peers suite's shape, and the
CI's batch-1 gate); the LSH layers LSH-4 with chunk 64. Each measurement is its own
process (``--child ours|peer|sdpa L``), ours then theirs at each length, for ``--rounds``
rounds, so neither side inherits the other's warm caches or allocator state and slow
drift of the machine hits both. A child runs two warm-up steps, then the median of 5
steps (3 from 8K tokens), and prints one line; the closing line gives each length's
median ratio over the rounds and its range. ``--against reformer-pytorch`` (the default)
needs the ``[peers]`` extra. Times are only comparable on an idle machine: check
``uptime`` first.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

D_MODEL, HEADS, N_HASHES, BUCKET = 256, 4, 4, 64
AGAINST = {"reformer-pytorch": "peer", "sdpa": "sdpa"}  # --against: the child it runs


def _child(which: str, seq_len: int) -> float:
    import torch

    torch.manual_seed(0)
    if which == "peer":
        from reformer_pytorch import LSHSelfAttention as PeerLayer

        layer = PeerLayer(
            dim=D_MODEL, heads=HEADS, bucket_size=BUCKET, n_hashes=N_HASHES, causal=True
        )
    else:
        from reformer.attention import build_attention
        from reformer.config import ReformerConfig

        config = ReformerConfig(
            d_model=D_MODEL, n_heads=HEADS, n_hashes=N_HASHES, bucket_size=BUCKET
        )
        layer = build_attention(config.replace(attention="sdpa") if which == "sdpa" else config)
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
    parser.add_argument(
        "--against",
        choices=sorted(AGAINST),
        default="reformer-pytorch",
        help="the other side: reformer-pytorch's LSH layer or exact attention through SDPA",
    )
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads per child")
    parser.add_argument("--child", nargs=2, metavar=("WHICH", "L"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        import torch

        torch.set_num_threads(args.threads)
        print(f"{_child(args.child[0], int(args.child[1])):.1f}")
        return 0
    if args.against == "reformer-pytorch":
        try:
            import reformer_pytorch  # noqa: F401
        except ImportError:
            print("needs reformer-pytorch: pip install -e '.[peers]'", file=sys.stderr)
            return 2
    lengths = [int(x) for x in args.lengths.split(",")]
    print(f"load average at start: {os.getloadavg()[0]:.2f} (1 min)")
    print(f"| round | L | ours (ms) | {args.against} (ms) | ours / theirs |")
    print("|---|---|---|---|---|")
    ratios: dict[int, list[float]] = {n: [] for n in lengths}
    for round_ in range(1, args.rounds + 1):
        for seq_len in lengths:
            ours = _measure("ours", seq_len, args.threads)
            theirs = _measure(AGAINST[args.against], seq_len, args.threads)
            ratios[seq_len].append(ours / theirs)
            print(f"| {round_} | {seq_len} | {ours:.1f} | {theirs:.1f} | {ours / theirs:.2f} |")
    print(f"load average at the end: {os.getloadavg()[0]:.2f} (1 min)")
    for seq_len, found in ratios.items():
        print(
            f"L={seq_len}: median ours / {args.against} {statistics.median(found):.3f} "
            f"(range {min(found):.3f}-{max(found):.3f}, {len(found)} rounds)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
