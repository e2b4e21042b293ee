"""Print a continuation from a trained byte LM: ``python -m suites.generate``.

Loads a byte-LM checkpoint of the quality suite (``python -m suites.run quality`` trains
them; they live under ``<out>/quality/checkpoints/``), encodes the prompt as UTF-8 bytes,
generates with the model's decoding cache (reformer.generate) and prints the prompt, the
continuation and the decoding speed. By default the newest Reformer byte-LM checkpoint
under runs/ or results/ is used. A byte LM is trained at a fixed length (256 bytes in the
default grid), so prompt plus continuation fit in that many bytes.

    python -m suites.generate [--checkpoint FILE] [--prompt TEXT] [--max-new-tokens N]
                              [--temperature T] [--top-k K] [--seed S] [--threads N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from suites.harness.arguments import MAX_THREADS, at_most, non_negative_float, positive_int
from suites.rows.store import COMMITTED_OUT, DEFAULT_OUT

FOLDERS = (DEFAULT_OUT, COMMITTED_OUT)
PATTERN = "bytes_reformer-lsh*.pt"


def newest_checkpoint(folders: tuple[Path, ...] = FOLDERS) -> Path | None:
    found = [p for folder in folders for p in (folder / "quality" / "checkpoints").glob(PATTERN)]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m suites.generate",
        description="Continue a prompt with a trained byte-level LM (quality-suite checkpoint).",
    )
    parser.add_argument("--checkpoint", type=Path, help="a bytes_*.pt checkpoint (default: newest)")
    parser.add_argument("--prompt", default="def main(", help="text to continue (UTF-8)")
    parser.add_argument("--max-new-tokens", type=positive_int, default=160, help="bytes to add")
    parser.add_argument(
        "--temperature", type=non_negative_float, default=0.8, help="0 is greedy (default 0.8)"
    )
    parser.add_argument("--top-k", type=positive_int, default=None, help="sample from the top K")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument(
        "--threads",
        type=at_most(positive_int, MAX_THREADS, "more than any machine runs"),
        default=1,
        help="torch threads (default 1: one token at a time is many small ops, which a "
        "second thread slows down on a busy machine)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    path = args.checkpoint or newest_checkpoint()
    if path is None:
        print(
            "no byte-LM checkpoint found under runs/ or results/ quality/checkpoints; train "
            "one with `python -m suites.run quality` or pass --checkpoint FILE",
            file=sys.stderr,
        )
        return 2
    if not path.is_file():
        print(f"--checkpoint {path}: no such file", file=sys.stderr)
        return 2
    import torch

    from suites.quality.tasks import Run, load_trained

    torch.set_num_threads(args.threads)
    from suites.quality.train import load_checkpoint

    try:
        state, meta = load_checkpoint(path)
        run = Run.from_dict(meta["run"])
        model = load_trained(run, state) if run.task == "bytes" else None
    except Exception as exc:  # noqa: BLE001 (any failure to read it means: not ours)
        print(
            f"--checkpoint {path}: not a checkpoint of this project's quality suite "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). It is "
            "read with torch.load(weights_only=True) on purpose: a file that needs "
            "weights_only=False can run code, so never load one you do not trust that way",
            file=sys.stderr,
        )
        return 2
    if model is None:
        print(f"--checkpoint {path}: a {run.task} model, not a byte LM", file=sys.stderr)
        return 2
    prompt_bytes = args.prompt.encode("utf-8")
    vocab = model.config.vocab_size
    if not prompt_bytes:
        print("--prompt is empty; give at least one byte of text to continue", file=sys.stderr)
        return 2
    if args.top_k is not None and args.top_k > vocab:
        print(
            f"--top-k {args.top_k}: this model has {vocab} symbols; allowed: 1..{vocab}",
            file=sys.stderr,
        )
        return 2
    room = model.config.max_seq_len - len(prompt_bytes)
    if room < 1:
        print(
            f"--prompt is {len(prompt_bytes)} bytes; this model takes at most "
            f"{model.config.max_seq_len} bytes in all",
            file=sys.stderr,
        )
        return 2
    new = min(args.max_new_tokens, room)
    if new < args.max_new_tokens:
        print(
            f"note: --max-new-tokens {args.max_new_tokens}: this model takes at most "
            f"{model.config.max_seq_len} bytes in all, so {new} are generated after the "
            f"{len(prompt_bytes)}-byte prompt",
            file=sys.stderr,
        )
    prompt = torch.tensor([list(prompt_bytes)], dtype=torch.long)
    generator = torch.Generator().manual_seed(args.seed)
    start = time.perf_counter()
    out = model.generate(
        prompt, new, temperature=args.temperature, top_k=args.top_k, generator=generator
    )
    seconds = time.perf_counter() - start
    text = bytes(out[0, len(prompt_bytes) :].tolist()).decode("utf-8", errors="replace")
    print(f"model: {path.name} ({run.model_name}, trained {run.train_attention})")
    print(f"prompt: {args.prompt!r}")
    print("continuation:")
    print(args.prompt + text)
    print(f"{new} bytes in {seconds:.2f} s: {new / seconds:.0f} tokens/s (prefill included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
